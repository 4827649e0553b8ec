// One governed Key Vault (RBAC authorization): the secret-rotator role on this vault only, and a system
// topic delivering its secret and key events to `keyvault_events`.
param vaultName string
param tags object
param principalId string
param roleDefinitionGuid string
param deployEventSubscriptions bool
param functionAppId string
param keyVaultEventTypes array
param eventGridIdentityId string
param storageAccountId string
param deadLetterContainer string
@description('Dead-letter with the topic\'s system-assigned identity (the product\'s storage denies public traffic); topic.bicep.')
param deadLetterWithSystemIdentity bool = false
@description('ARM id of the vault\'s existing system topic (Azure allows one per source), whose event subscription is added to it; empty: create one beside the vault. It must carry eventGridIdentityId.')
param existingTopicId string = ''

var reuseTopic = !empty(existingTopicId)
// where the topic is: the existing one's resource group, or the vault's own (a ternary inside resourceGroup():
// Bicep resolves a module scope chosen by a ternary between two scopes at compile time, to the wrong one)
var topicSubscriptionId = reuseTopic ? split(existingTopicId, '/')[2] : subscription().subscriptionId
var topicResourceGroup = reuseTopic ? split(existingTopicId, '/')[4] : resourceGroup().name

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource rotator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, roleDefinitionGuid)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionGuid)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'guardrails: exactly the Key Vault data actions the code declares'
  }
}

module topic 'topic.bicep' = {
  name: 'guardrails-kv-topic-${vaultName}'
  scope: resourceGroup(topicSubscriptionId, topicResourceGroup)
  params: {
    name: 'evgt-guardrails-${vaultName}'
    location: vault.location
    tags: tags
    topicType: 'Microsoft.KeyVault.vaults'
    source: vault.id
    functionAppId: functionAppId
    functionName: 'keyvault_events'
    includedEventTypes: keyVaultEventTypes
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
