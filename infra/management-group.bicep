// guardrails over a management group, after infra/main.bicep deployed the app (with governedSubscriptionIds=[]):
//   az deployment mg create --management-group-id <mg> -l <region> -f infra/management-group.bicep \
//     -p environmentName=<env> location=<region> principalId=<GUARDRAILS_IDENTITY_PRINCIPAL_ID> \
//        functionAppId=<GUARDRAILS_FUNCTION_APP_ID> eventGridIdentityId=<GUARDRAILS_EVENTGRID_IDENTITY_ID> \
//        storageAccountId=<GUARDRAILS_STORAGE_ACCOUNT_ID> deadLetterContainer=<GUARDRAILS_DEAD_LETTER_CONTAINER> \
//        deadLetterWithSystemIdentity=<GUARDRAILS_PRIVATE_NETWORKING> \
//        eventSubscriptionIds='["<sub-1>","<sub-2>"]'
// One remediator role, defined and assigned AT the group: every subscription below it, now and later, is
// governed (the sweep finds them: it lists every subscription the identity can see). Events have no
// management-group source: each subscription in eventSubscriptionIds gets its own system topic
// (modules/subscription.bicep, without a role assignment of its own); a subscription added later is swept
// until it is listed there. Deploy infra/main.bicep with sweepManagementGroupIds=['<mg>'] so the sweep also
// checks the role assignments made at the group itself.
targetScope = 'managementGroup'

@minLength(1)
@maxLength(40)
@description('The environment name infra/main.bicep was deployed with.')
param environmentName string

@minLength(1)
@description('Region of the per-subscription event resource groups (the app\'s region).')
param location string

@description('Object id of the guardrails identity (main.bicep output GUARDRAILS_IDENTITY_PRINCIPAL_ID).')
param principalId string

@description('The function app (GUARDRAILS_FUNCTION_APP_ID).')
param functionAppId string

@description('The identity Event Grid delivers and dead-letters with (GUARDRAILS_EVENTGRID_IDENTITY_ID).')
param eventGridIdentityId string

@description('The product storage account, for dead letters (GUARDRAILS_STORAGE_ACCOUNT_ID).')
param storageAccountId string

@description('Dead-letter container (GUARDRAILS_DEAD_LETTER_CONTAINER).')
param deadLetterContainer string

@description('The app was deployed with enablePrivateNetworking (GUARDRAILS_PRIVATE_NETWORKING): its storage denies public traffic, so each system topic dead-letters with its own system-assigned identity, granted the container (in the storage account\'s resource group).')
param deadLetterWithSystemIdentity bool = false

@description('Subscriptions below the group whose resource writes are delivered as events: a system topic each.')
param eventSubscriptionIds array = []

@description('Create the Event Grid subscriptions (the functions must be deployed first).')
param deployEventSubscriptions bool = false

@description('Subscriptions that already have a system topic (Azure allows one per source): \'/subscriptions/<id>\' -> that topic\'s ARM id; only the event subscription is added to it (it must carry eventGridIdentityId).')
param existingSystemTopicIds object = {}

// ---- generated: `python -m guardrails permissions --bicep` (test_infra checks equality) -----------------
var guardrailActions = [
  'Microsoft.Authorization/roleAssignments/delete'
  'Microsoft.Authorization/roleAssignments/read'
  'Microsoft.Authorization/roleDefinitions/read'
  'Microsoft.ContainerRegistry/locations/operationResults/read'
  'Microsoft.ContainerRegistry/registries/read'
  'Microsoft.ContainerRegistry/registries/write'
  'Microsoft.EventGrid/systemTopics/eventSubscriptions/read'
  'Microsoft.EventGrid/systemTopics/read'
  'Microsoft.KeyVault/vaults/read'
  'Microsoft.KeyVault/vaults/write'
  'Microsoft.MachineLearningServices/locations/mfeOperationResults/read'
  'Microsoft.MachineLearningServices/locations/mfeOperationsStatus/read'
  'Microsoft.MachineLearningServices/locations/workspaceOperationsStatus/read'
  'Microsoft.MachineLearningServices/registries/assets/read'
  'Microsoft.MachineLearningServices/registries/assets/write'
  'Microsoft.MachineLearningServices/registries/read'
  'Microsoft.MachineLearningServices/registries/write'
  'Microsoft.MachineLearningServices/workspaces/computes/read'
  'Microsoft.MachineLearningServices/workspaces/models/read'
  'Microsoft.MachineLearningServices/workspaces/models/versions/read'
  'Microsoft.MachineLearningServices/workspaces/models/versions/write'
  'Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments/read'
  'Microsoft.MachineLearningServices/workspaces/onlineEndpoints/read'
  'Microsoft.MachineLearningServices/workspaces/onlineEndpoints/write'
  'Microsoft.MachineLearningServices/workspaces/read'
  'Microsoft.MachineLearningServices/workspaces/write'
  'Microsoft.Management/managementGroups/descendants/read'
  'Microsoft.ResourceGraph/resources/read'
  'Microsoft.Resources/subscriptions/read'
  'Microsoft.Storage/storageAccounts/read'
  'Microsoft.Storage/storageAccounts/write'
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
// ---- end generated ------------------------------------------------------------------------------------

var tags = {
  'azd-env-name': environmentName
}

// The remediator at the group: exactly the ARM actions the code declares (no data actions: a custom role with
// data actions cannot be assigned at a management group; the Key Vault rotator stays per vault in main.bicep, and
// the storage-key rotator per rotated storage account: main.bicep's rotatedStorageAccountIds).
resource remediatorRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(managementGroup().id, environmentName, 'guardrails-remediator')
  properties: {
    roleName: 'Guardrails Remediator (${environmentName}, ${managementGroup().name})'
    description: 'Reads and corrects the resources the guardrails cover, below this management group; generated from the code (python -m guardrails permissions).'
    type: 'CustomRole'
    permissions: [
      {
        actions: guardrailActions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      managementGroup().id
    ]
  }
}

resource remediator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(managementGroup().id, principalId, 'guardrails-remediator')
  properties: {
    roleDefinitionId: remediatorRole.id
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'guardrails: exactly the actions the code declares, on every subscription below this group'
  }
}

// A system topic per listed subscription, delivering exactly the covered operations; the role is the group's.
module subscriptions 'modules/subscription.bicep' = [for id in eventSubscriptionIds: {
  name: 'guardrails-sub-${uniqueString(id, environmentName)}'
  scope: subscription(id)
  params: {
    environmentName: environmentName
    location: location
    tags: tags
    principalId: principalId
    roleDefinitionGuid: remediatorRole.name
    assignRole: false
    deployEventSubscriptions: deployEventSubscriptions
    functionAppId: functionAppId
    coveredOperations: coveredOperations
    coveredDeleteOperations: coveredDeleteOperations
    eventGridIdentityId: eventGridIdentityId
    storageAccountId: storageAccountId
    deadLetterContainer: deadLetterContainer
    deadLetterWithSystemIdentity: deadLetterWithSystemIdentity
    existingTopicId: contains(existingSystemTopicIds, '/subscriptions/${id}') ? existingSystemTopicIds['/subscriptions/${id}'] : ''
  }
}]

// the own identity of each topic may write the dead-letter container (deadLetterWithSystemIdentity)
module deadLetterWriters 'modules/deadletter-writer.bicep' = [for (id, i) in eventSubscriptionIds: if (deadLetterWithSystemIdentity) {
  name: 'guardrails-dlw-sub-${uniqueString(id, environmentName)}'
  scope: resourceGroup(split(storageAccountId, '/')[2], split(storageAccountId, '/')[4])
  params: {
    storageAccountName: last(split(storageAccountId, '/'))
    deadLetterContainer: deadLetterContainer
    principalId: subscriptions[i].outputs.deadLetterPrincipalId
  }
}]

output GUARDRAILS_MG_REMEDIATOR_ROLE_ID string = remediatorRole.id
