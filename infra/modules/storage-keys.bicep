// One storage account whose keys a secrets policy rotates (`rotation.account` of a `storage-account-key`
// rotation): the storage-key rotator role (listKeys / regenerateKey) on this account only. A key opens all of
// an account's data, so the role is never assigned at a subscription or management group.
param accountName string
param principalId string
param roleDefinitionGuid string

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: accountName
}

resource keyRotator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId, roleDefinitionGuid)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionGuid)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'guardrails: list and regenerate this account\'s keys (secret rotation), nothing else'
  }
}
