// A system topic's own identity may write the dead-letter container, and nothing else: the dead-letter
// writer when the storage account denies public traffic (enablePrivateNetworking; topic.bicep's
// deadLetterWithSystemIdentity). Deployed into the product's resource group, one per topic.
param storageAccountName string
param deadLetterContainer string
@description('The system topic\'s system-assigned identity (topic.bicep output deadLetterPrincipalId).')
param principalId string

var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource deadLetters 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: deadLetterContainer
}

resource writer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetters.id, principalId, storageBlobDataContributor)
  scope: deadLetters
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'guardrails: an Event Grid system topic writes its undeliverable events here (storage firewall: trusted service, system-assigned identity)'
  }
}
