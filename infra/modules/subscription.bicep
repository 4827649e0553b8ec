// One governed subscription: the remediator role for the guardrail's identity, and a system topic on the
// subscription delivering resource writes of the covered operations to `resource_events`.
targetScope = 'subscription'

param environmentName string
param location string
param tags object
param principalId string
param roleDefinitionGuid string
param deployEventSubscriptions bool
param functionAppId string
param coveredOperations array
param eventGridIdentityId string
param storageAccountId string
param deadLetterContainer string
@description('Assign the remediator here. False when it is assigned once at a management group above (infra/management-group.bicep).')
param assignRole bool = true

resource remediator 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (assignRole) {
  name: guid(subscription().id, principalId, roleDefinitionGuid)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionGuid)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'guardrails: exactly the actions the code declares'
  }
}

resource events 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}-events'
  location: location
  tags: tags
}

module topic 'topic.bicep' = {
  name: 'guardrails-subscription-topic'
  scope: events
  params: {
    name: 'evgt-guardrails-${subscription().subscriptionId}'
    location: 'global'
    tags: tags
    topicType: 'Microsoft.Resources.Subscriptions'
    source: subscription().id
    functionAppId: functionAppId
    functionName: 'resource_events'
    includedEventTypes: [
      'Microsoft.Resources.ResourceWriteSuccess'
    ]
    advancedFilters: [
      {
        operatorType: 'StringIn'
        key: 'data.operationName'
        values: coveredOperations
      }
    ]
    eventGridIdentityId: eventGridIdentityId
    storageAccountId: storageAccountId
    deadLetterContainer: deadLetterContainer
    deployEventSubscription: deployEventSubscriptions
  }
}

output topicId string = topic.outputs.topicId
