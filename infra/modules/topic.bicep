// An Event Grid system topic and its subscription to one function: only the event types (and
// operations) the guardrails act on are delivered, one event per call, undeliverable ones dead-lettered
// to the product's storage with Event Grid's own user-assigned identity.
param name string
param location string
param tags object
param topicType string
param source string
param functionAppId string
param functionName string
param includedEventTypes array
param advancedFilters array = []
param eventGridIdentityId string
param storageAccountId string
param deadLetterContainer string
param deployEventSubscription bool

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: name
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${eventGridIdentityId}': {}
    }
  }
  properties: {
    source: source
    topicType: topicType
  }
}

resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (deployEventSubscription) {
  parent: topic
  name: 'guardrails-${functionName}'
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
      identity: {
        type: 'UserAssigned'
        userAssignedIdentity: eventGridIdentityId
      }
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

output topicId string = topic.id
