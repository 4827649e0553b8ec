// One governed subscription: the remediator role for the guardrail's identity, and a system topic on the
// subscription delivering resource writes of the covered operations to `resource_events` (and, by a second
// event subscription, the deletions of covered resources, which end their record in the compliance report).
targetScope = 'subscription'

param environmentName string
param location string
param tags object
param principalId string
param roleDefinitionGuid string
param deployEventSubscriptions bool
param functionAppId string
param coveredOperations array
@description('data.operationName values of the deletions delivered to resource_events by a second event subscription (ResourceDeleteSuccess: a deleted resource leaves the compliance report); empty: none.')
param coveredDeleteOperations array = []
param eventGridIdentityId string
param storageAccountId string
param deadLetterContainer string
@description('Dead-letter with the topic\'s system-assigned identity (the product\'s storage denies public traffic); topic.bicep.')
param deadLetterWithSystemIdentity bool = false
@description('Assign the remediator here. False when it is assigned once at a management group above (infra/management-group.bicep).')
param assignRole bool = true
@description('ARM id of the subscription\'s existing system topic (Azure allows one per source), whose event subscription is added to it; empty: create one in rg-<env>-events. It must carry eventGridIdentityId.')
param existingTopicId string = ''

var reuseTopic = !empty(existingTopicId)
var eventsGroupName = 'rg-${environmentName}-events'

resource remediator 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (assignRole) {
  name: guid(subscription().id, principalId, roleDefinitionGuid)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionGuid)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'guardrails: exactly the actions the code declares'
  }
}

resource events 'Microsoft.Resources/resourceGroups@2024-03-01' = if (!reuseTopic) {
  name: eventsGroupName
  location: location
  tags: tags
}

module topic 'topic.bicep' = {
  name: 'guardrails-subscription-topic'
  // the existing topic's resource group (a subscription's topic lives in that subscription), or ours
  scope: resourceGroup(reuseTopic ? split(existingTopicId, '/')[4] : eventsGroupName)
  dependsOn: [
    events
  ]
  params: {
    name: 'evgt-guardrails-${subscription().subscriptionId}'
    location: 'global'
    tags: tags
    topicType: 'Microsoft.Resources.Subscriptions'
    source: subscription().id
    functionAppId: functionAppId
    functionName: 'resource_events'
    // a write; the failure or cancellation of one ends a long-running fix left `requested`
    includedEventTypes: [
      'Microsoft.Resources.ResourceWriteSuccess'
      'Microsoft.Resources.ResourceWriteFailure'
      'Microsoft.Resources.ResourceWriteCancel'
    ]
    advancedFilters: [
      {
        operatorType: 'StringIn'
        key: 'data.operationName'
        values: coveredOperations
      }
    ]
    deleteOperations: coveredDeleteOperations
    eventGridIdentityId: eventGridIdentityId
    storageAccountId: storageAccountId
    deadLetterContainer: deadLetterContainer
    deadLetterWithSystemIdentity: deadLetterWithSystemIdentity
    deployEventSubscription: deployEventSubscriptions
    existingTopicName: reuseTopic ? last(split(existingTopicId, '/')) : ''
  }
}

output topicId string = topic.outputs.topicId
// the own identity of the topic, which writes its dead letters when deadLetterWithSystemIdentity (else empty)
output deadLetterPrincipalId string = topic.outputs.deadLetterPrincipalId
