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

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-10-01' existing = {
  name: workspaceName
}

module topic 'topic.bicep' = {
  name: 'guardrails-mlw-topic-${workspaceName}'
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
    deployEventSubscription: deployEventSubscriptions
  }
}
