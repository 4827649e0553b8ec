// guardrails on Azure: `azd up`, or `az deployment sub create -l <region> -f infra/main.bicep -p infra/main.parameters.json`.
// Zero trust by default: one user-assigned identity, no storage keys, HTTPS/TLS 1.2 only, least-privilege
// custom roles whose actions are exactly what the code declares (`python -m guardrails permissions --bicep`;
// tests/unit/test_infra.py fails when they drift apart).
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('Name of the environment (azd: AZURE_ENV_NAME); prefixes every resource name.')
param environmentName string

@minLength(1)
@description('Region of the resource group and the function app (one that offers Flex Consumption).')
param location string

@description('Resource group of the product (function app, storage, monitoring, network).')
param resourceGroupName string = 'rg-${environmentName}'

@description('Subscriptions the guardrails govern: each gets the remediator role and a system topic delivering its events.')
param governedSubscriptionIds array = [
  subscription().subscriptionId
]

@description('Full ARM ids of the Key Vaults whose secrets and keys the guardrails rotate: each gets the data-plane role and a system topic.')
param governedVaultIds array = []

@description('Full ARM ids of the Azure ML workspaces whose model registrations, deployments, drift and run events the ML lifecycle guardrail acts on: each gets a system topic.')
param governedMlWorkspaceIds array = []

@description('VNet integration of the function app and private endpoints for storage, function app and the governed vaults; public network access off.')
param enablePrivateNetworking bool = false

@description('Create the Event Grid subscriptions. They need the functions deployed first: azd sets it after `azd deploy` (postdeploy hook).')
param deployEventSubscriptions bool = false

@description('Object id of the deploying user or pipeline (azd: AZURE_PRINCIPAL_ID): table access for the post-provision metadata sync. Empty: none.')
param deployerPrincipalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
])
@description('Kind of deployerPrincipalId (azd: AZURE_PRINCIPAL_TYPE; a pipeline signed in as a service principal: ServicePrincipal, or ARM rejects the assignment with UnmatchedPrincipalType).')
param deployerPrincipalType string = 'User'

@allowed([
  512
  2048
  4096
])
@description('Flex Consumption instance memory (MB).')
param instanceMemoryMB int = 2048

@minValue(40)
@maxValue(1000)
@description('Flex Consumption scale-out ceiling (instances).')
param maximumInstanceCount int = 100

@description('Zone-redundant Flex Consumption plan (only in regions that offer it).')
param zoneRedundant bool = false

@description('Prefix of the product tables (GUARDRAILS_TABLE_PREFIX).')
param tablePrefix string = 'Guardrails'

@description('Sources that already have an Event Grid system topic (Azure allows one per source, e.g. made by the portal\'s Events blade): source ARM id (\'/subscriptions/<id>\', a governed vault\'s or ML workspace\'s id) -> that topic\'s ARM id. Only the event subscription is added to it; it must carry the Event Grid identity (GUARDRAILS_EVENTGRID_IDENTITY_ID).')
param existingSystemTopicIds object = {}

@description('Management groups whose own role assignments the sweep checks (GUARDRAILS_SWEEP_MANAGEMENT_GROUPS); see infra/management-group.bicep.')
param sweepManagementGroupIds array = []

// ---- generated: `python -m guardrails permissions --bicep` (test_infra checks equality) -----------------
var guardrailActions = [
  'Microsoft.Authorization/roleAssignments/delete'
  'Microsoft.Authorization/roleAssignments/read'
  'Microsoft.Authorization/roleDefinitions/read'
  'Microsoft.ContainerRegistry/registries/read'
  'Microsoft.ContainerRegistry/registries/write'
  'Microsoft.EventGrid/systemTopics/eventSubscriptions/read'
  'Microsoft.EventGrid/systemTopics/read'
  'Microsoft.KeyVault/vaults/read'
  'Microsoft.KeyVault/vaults/write'
  'Microsoft.MachineLearningServices/registries/models/read'
  'Microsoft.MachineLearningServices/registries/models/versions/read'
  'Microsoft.MachineLearningServices/registries/models/versions/write'
  'Microsoft.MachineLearningServices/registries/read'
  'Microsoft.MachineLearningServices/registries/write'
  'Microsoft.MachineLearningServices/workspaces/computes/read'
  'Microsoft.MachineLearningServices/workspaces/computes/write'
  'Microsoft.MachineLearningServices/workspaces/models/read'
  'Microsoft.MachineLearningServices/workspaces/models/versions/read'
  'Microsoft.MachineLearningServices/workspaces/models/versions/write'
  'Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments/read'
  'Microsoft.MachineLearningServices/workspaces/onlineEndpoints/read'
  'Microsoft.MachineLearningServices/workspaces/onlineEndpoints/write'
  'Microsoft.MachineLearningServices/workspaces/read'
  'Microsoft.MachineLearningServices/workspaces/write'
  'Microsoft.ResourceGraph/resources/read'
  'Microsoft.Resources/subscriptions/read'
  'Microsoft.Storage/storageAccounts/listKeys/action'
  'Microsoft.Storage/storageAccounts/read'
  'Microsoft.Storage/storageAccounts/regenerateKey/action'
  'Microsoft.Storage/storageAccounts/write'
]
var guardrailVaultDataActions = [
  'Microsoft.KeyVault/vaults/keys/read'
  'Microsoft.KeyVault/vaults/keys/rotate/action'
  'Microsoft.KeyVault/vaults/secrets/getSecret/action'
  'Microsoft.KeyVault/vaults/secrets/readMetadata/action'
  'Microsoft.KeyVault/vaults/secrets/setSecret/action'
  'Microsoft.KeyVault/vaults/secrets/update/action'
]
var coveredOperations = [
  'Microsoft.Authorization/roleAssignments/write'
  'Microsoft.Authorization/roleDefinitions/write'
  'Microsoft.ContainerRegistry/registries/write'
  'Microsoft.KeyVault/vaults/write'
  'Microsoft.MachineLearningServices/registries/models/versions/write'
  'Microsoft.MachineLearningServices/registries/write'
  'Microsoft.MachineLearningServices/workspaces/computes/write'
  'Microsoft.MachineLearningServices/workspaces/models/versions/write'
  'Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments/write'
  'Microsoft.MachineLearningServices/workspaces/onlineEndpoints/write'
  'Microsoft.MachineLearningServices/workspaces/write'
  'Microsoft.Storage/storageAccounts/write'
]
var coveredDeleteOperations = [
  'Microsoft.Authorization/roleAssignments/delete'
  'Microsoft.ContainerRegistry/registries/delete'
  'Microsoft.KeyVault/vaults/delete'
  'Microsoft.MachineLearningServices/registries/delete'
  'Microsoft.MachineLearningServices/registries/models/versions/delete'
  'Microsoft.MachineLearningServices/workspaces/computes/delete'
  'Microsoft.MachineLearningServices/workspaces/delete'
  'Microsoft.MachineLearningServices/workspaces/models/versions/delete'
  'Microsoft.MachineLearningServices/workspaces/onlineEndpoints/delete'
  'Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments/delete'
  'Microsoft.Resources/subscriptions/resourceGroups/delete'
  'Microsoft.Storage/storageAccounts/delete'
]
var keyVaultEventTypes = [
  'Microsoft.KeyVault.KeyExpired'
  'Microsoft.KeyVault.KeyNearExpiry'
  'Microsoft.KeyVault.KeyNewVersionCreated'
  'Microsoft.KeyVault.SecretExpired'
  'Microsoft.KeyVault.SecretNearExpiry'
  'Microsoft.KeyVault.SecretNewVersionCreated'
  'Microsoft.KeyVault.VaultAccessPolicyChanged'
]
var mlWorkspaceEventTypes = [
  'Microsoft.MachineLearningServices.DatasetDriftDetected'
  'Microsoft.MachineLearningServices.ModelDeployed'
  'Microsoft.MachineLearningServices.ModelRegistered'
  'Microsoft.MachineLearningServices.RunCompleted'
  'Microsoft.MachineLearningServices.RunStatusChanged'
]
// ---- end generated ------------------------------------------------------------------------------------

var token = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var governedScopes = [for id in governedSubscriptionIds: '/subscriptions/${toLower(id)}']
// the rotator is assigned on each governed vault: its subscription must be an assignable scope of the role,
// whether or not that subscription is governed (a vault elsewhere, the management-group recipe's empty list);
// lower case, so that union() keeps one scope per subscription
var vaultSubscriptionScopes = [for id in governedVaultIds: '/subscriptions/${toLower(split(id, '/')[2])}']

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: resourceGroupName
  location: location
  tags: tags
}

// The remediator: exactly the ARM actions the code declares, assignable in the governed subscriptions.
resource remediatorRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, environmentName, 'guardrails-remediator')
  properties: {
    roleName: 'Guardrails Remediator (${environmentName})'
    description: 'Reads and corrects the resources the guardrails cover; generated from the code (python -m guardrails permissions).'
    type: 'CustomRole'
    permissions: [
      {
        actions: guardrailActions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: union([subscription().id], governedScopes)
  }
}

// The rotator: exactly the Key Vault data actions the code declares, assigned on each governed vault only.
resource rotatorRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, environmentName, 'guardrails-secret-rotator')
  properties: {
    roleName: 'Guardrails Secret Rotator (${environmentName})'
    description: 'Rotates and disables secret versions, rotates keys; generated from the code (python -m guardrails permissions).'
    type: 'CustomRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: guardrailVaultDataActions
        notDataActions: []
      }
    ]
    assignableScopes: union([subscription().id], governedScopes, vaultSubscriptionScopes)
  }
}

module app 'modules/app.bicep' = {
  name: 'guardrails-app'
  scope: rg
  params: {
    location: location
    tags: tags
    token: token
    tablePrefix: tablePrefix
    enablePrivateNetworking: enablePrivateNetworking
    governedVaultIds: governedVaultIds
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    deployerPrincipalId: deployerPrincipalId
    deployerPrincipalType: deployerPrincipalType
    zoneRedundant: zoneRedundant
    sweepManagementGroupIds: sweepManagementGroupIds
    governedMlWorkspaceIds: governedMlWorkspaceIds
  }
}

// One system topic per governed subscription, delivering exactly the covered operations.
module subscriptions 'modules/subscription.bicep' = [for id in governedSubscriptionIds: {
  name: 'guardrails-sub-${uniqueString(id, environmentName)}'
  scope: subscription(id)
  params: {
    environmentName: environmentName
    location: location
    tags: tags
    principalId: app.outputs.identityPrincipalId
    roleDefinitionGuid: remediatorRole.name
    deployEventSubscriptions: deployEventSubscriptions
    functionAppId: app.outputs.functionAppId
    coveredOperations: coveredOperations
    coveredDeleteOperations: coveredDeleteOperations
    eventGridIdentityId: app.outputs.eventGridIdentityId
    storageAccountId: app.outputs.storageAccountId
    deadLetterContainer: app.outputs.deadLetterContainer
    existingTopicId: contains(existingSystemTopicIds, '/subscriptions/${id}') ? existingSystemTopicIds['/subscriptions/${id}'] : ''
  }
}]

// Each governed vault: the rotator role on that vault only, and a system topic for its events.
module vaults 'modules/vault.bicep' = [for id in governedVaultIds: {
  name: 'guardrails-kv-${uniqueString(id, environmentName)}'
  scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
  params: {
    vaultName: last(split(id, '/'))
    tags: tags
    principalId: app.outputs.identityPrincipalId
    roleDefinitionGuid: rotatorRole.name
    deployEventSubscriptions: deployEventSubscriptions
    functionAppId: app.outputs.functionAppId
    keyVaultEventTypes: keyVaultEventTypes
    eventGridIdentityId: app.outputs.eventGridIdentityId
    storageAccountId: app.outputs.storageAccountId
    deadLetterContainer: app.outputs.deadLetterContainer
    existingTopicId: contains(existingSystemTopicIds, id) ? existingSystemTopicIds[id] : ''
  }
}]

// Each governed Azure ML workspace: a system topic for its model, drift and run events (the ARM writes of
// its model versions, endpoints and deployments arrive through the subscription topic).
module mlWorkspaces 'modules/ml-workspace.bicep' = [for id in governedMlWorkspaceIds: {
  name: 'guardrails-mlw-${uniqueString(id, environmentName)}'
  scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
  params: {
    workspaceName: last(split(id, '/'))
    tags: tags
    deployEventSubscriptions: deployEventSubscriptions
    functionAppId: app.outputs.functionAppId
    mlWorkspaceEventTypes: mlWorkspaceEventTypes
    eventGridIdentityId: app.outputs.eventGridIdentityId
    storageAccountId: app.outputs.storageAccountId
    deadLetterContainer: app.outputs.deadLetterContainer
    existingTopicId: contains(existingSystemTopicIds, id) ? existingSystemTopicIds[id] : ''
  }
}]

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.functionAppName
output GUARDRAILS_TABLES_ENDPOINT string = app.outputs.tablesEndpoint
output GUARDRAILS_TABLE_PREFIX string = tablePrefix
output GUARDRAILS_IDENTITY_PRINCIPAL_ID string = app.outputs.identityPrincipalId
output GUARDRAILS_IDENTITY_CLIENT_ID string = app.outputs.identityClientId
output GUARDRAILS_REMEDIATOR_ROLE_ID string = remediatorRole.id
// what infra/management-group.bicep takes
output GUARDRAILS_FUNCTION_APP_ID string = app.outputs.functionAppId
output GUARDRAILS_EVENTGRID_IDENTITY_ID string = app.outputs.eventGridIdentityId
output GUARDRAILS_STORAGE_ACCOUNT_ID string = app.outputs.storageAccountId
output GUARDRAILS_DEAD_LETTER_CONTAINER string = app.outputs.deadLetterContainer
