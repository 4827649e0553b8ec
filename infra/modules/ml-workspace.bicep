// One governed Azure ML workspace: a system topic delivering its model registrations, model
// deployments, dataset drift and run events to `resource_events` (the service routes them to the ML
// lifecycle guardrail). Reads and writes of its models, endpoints and deployments use the remediator
// role assigned at the subscription.
param workspaceName string
param tags object
param deployEventSubscriptions bool
param functionAppId string
param mlWorkspaceEventTypes array
param eventGridIdentityId string
param storageAccountId string
param deadLetterContainer string
@description('Dead-letter with the topic\'s system-assigned identity (the product\'s storage denies public traffic); topic.bicep.')
param deadLetterWithSystemIdentity bool = false
@description('ARM id of the workspace\'s existing system topic (Azure allows one per source), whose event subscription is added to it; empty: create one beside the workspace. It must carry eventGridIdentityId.')
param existingTopicId string = ''

var reuseTopic = !empty(existingTopicId)
// where the topic is: the existing one's resource group, or the workspace's own (a ternary inside resourceGroup():
// Bicep resolves a module scope chosen by a ternary between two scopes at compile time, to the wrong one)
var topicSubscriptionId = reuseTopic ? split(existingTopicId, '/')[2] : subscription().subscriptionId
var topicResourceGroup = reuseTopic ? split(existingTopicId, '/')[4] : resourceGroup().name

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-10-01' existing = {
  name: workspaceName
}

module topic 'topic.bicep' = {
  name: 'guardrails-mlw-topic-${workspaceName}'
  scope: resourceGroup(topicSubscriptionId, topicResourceGroup)
  params: {
    name: 'evgt-guardrails-${workspaceName}'
    location: workspace.location
    tags: tags
    topicType: 'Microsoft.MachineLearningServices.Workspaces'
    source: workspace.id
    functionAppId: functionAppId
    functionName: 'resource_events'
    includedEventTypes: mlWorkspaceEventTypes
    eventGridIdentityId: eventGridIdentityId
    storageAccountId: storageAccountId
    deadLetterContainer: deadLetterContainer
    deadLetterWithSystemIdentity: deadLetterWithSystemIdentity
    deployEventSubscription: deployEventSubscriptions
    existingTopicName: reuseTopic ? last(split(existingTopicId, '/')) : ''
  }
}
// the own identity of the topic, which writes its dead letters when deadLetterWithSystemIdentity (else empty)
output deadLetterPrincipalId string = topic.outputs.deadLetterPrincipalId
