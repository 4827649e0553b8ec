// An Event Grid system topic and its subscription to one function: only the event types (and
// operations) the guardrails act on are delivered, one event per call, undeliverable ones dead-lettered
// to the product storage with the user-assigned identity of Event Grid, or, when the storage account
// denies public traffic (enablePrivateNetworking), with the system-assigned identity of the topic: through a
// storage firewall Event Grid writes only as a trusted service with a system-assigned identity (a
// user-assigned one is refused, whether trusted services are allowed or not).
// Azure allows one system topic per source: when the source has one already (made by the portal's
// Events blade, another tool, an earlier deployment), pass its name in `existingTopicName` and deploy
// this module into that topic's resource group: only the event subscription is created on it. That
// topic must carry the user-assigned identity `eventGridIdentityId` (the dead letters are written
// with it; README "Deploy to Azure", "A source that already has a system topic").
param name string
param location string
param tags object
param topicType string
param source string
param functionAppId string
param functionName string
param includedEventTypes array
param advancedFilters array = []
@description('data.operationName values whose ResourceDeleteSuccess a second event subscription delivers to the same function (a subscription topic only); empty: no second subscription. Its own subscription keeps each under Event Grid\'s 25 filter values.')
param deleteOperations array = []
param eventGridIdentityId string
param storageAccountId string
param deadLetterContainer string
param deployEventSubscription bool
@description('Dead-letter with the topic\'s system-assigned identity (the storage account denies public traffic: Event Grid passes its firewall as a trusted service with a system-assigned identity only). The caller grants that identity the dead-letter container (deadletter-writer.bicep). A reused topic must have its system-assigned identity enabled.')
param deadLetterWithSystemIdentity bool = false
@description('Name of the source\'s existing system topic, in this module\'s resource group; empty: create `name`.')
param existingTopicName string = ''

var reuseTopic = !empty(existingTopicName)
// who writes the dead letters (deadLetterWithSystemIdentity above)
var deadLetterIdentity = deadLetterWithSystemIdentity ? {
  type: 'SystemAssigned'
} : {
  type: 'UserAssigned'
  userAssignedIdentity: eventGridIdentityId
}
// Event Grid event subscription names: 3-64 characters, alphanumerics and hyphens only (function names have `_`)
var subscriptionName = 'guardrails-${replace(functionName, '_', '-')}'

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (!reuseTopic) {
  name: name
  location: location
  tags: tags
  identity: {
    type: deadLetterWithSystemIdentity ? 'SystemAssigned, UserAssigned' : 'UserAssigned'
    userAssignedIdentities: {
      '${eventGridIdentityId}': {}
    }
  }
  properties: {
    source: source
    topicType: topicType
  }
}

// the topic the subscription hangs off: the one created above, or the source's existing one
resource sourceTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: reuseTopic ? existingTopicName : name
}

resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (deployEventSubscription) {
  parent: sourceTopic
  name: subscriptionName
  dependsOn: [
    topic
  ]
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/${functionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: includedEventTypes
      enableAdvancedFilteringOnArrays: true
      advancedFilters: advancedFilters
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: {
      identity: deadLetterIdentity
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: storageAccountId
          blobContainerName: deadLetterContainer
        }
      }
    }
  }
}

resource deletions 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (deployEventSubscription && !empty(deleteOperations)) {
  parent: sourceTopic
  name: '${subscriptionName}-deletes'
  // after the writes' subscription: Event Grid may refuse two event subscriptions of one topic
  // created at once (Conflict)
  dependsOn: [
    topic
    subscription
  ]
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/${functionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Resources.ResourceDeleteSuccess'
      ]
      enableAdvancedFilteringOnArrays: true
      advancedFilters: [
        {
          operatorType: 'StringIn'
          key: 'data.operationName'
          values: deleteOperations
        }
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: {
      identity: deadLetterIdentity
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: storageAccountId
          blobContainerName: deadLetterContainer
        }
      }
    }
  }
}

output topicId string = sourceTopic.id
output eventSubscriptionName string = subscriptionName
// the identity writing the dead letters of this topic when it is its own (else empty)
output deadLetterPrincipalId string = deadLetterWithSystemIdentity ? sourceTopic.identity.principalId : ''
