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
    deployEventSubscription: deployEventSubscriptions
  }
}
