// The product's own resources: identities, storage (tables, deployment package, dead letters), monitoring,
// the Flex Consumption function app, and (optionally) the private network.
param location string
param tags object
param token string
param tablePrefix string
param enablePrivateNetworking bool
param governedVaultIds array
param instanceMemoryMB int
param maximumInstanceCount int
param deployerPrincipalId string
param deployerPrincipalType string
param zoneRedundant bool
param sweepManagementGroupIds array
param governedMlWorkspaceIds array
// the timers' schedules (NCRONTAB with seconds): the host resolves %GUARDRAILS_*_SCHEDULE% from these
// app settings, and cannot index a timer whose setting is missing
param sweepSchedule string = '0 0 */6 * * *'
param expirySchedule string = '0 */5 * * * *'
param decisionOutboxSchedule string = '0 */5 * * * *'
param deadLetterSchedule string = '0 */15 * * * *'
// dead letters are kept this long after Event Grid wrote them (the replay's decisions are audit rows)
@minValue(7)
param deadLetterRetentionDays int = 90
// App Service authentication (Easy Auth) in front of the app: the client id of an Entra app registration whose
// tokens callers of the check APIs present; empty: off (no caller identity reaches the job checks)
param authClientId string = ''

// built-in roles (ids are the same in every tenant)
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'
var eventGridDataSender = 'd5a91429-5739-47e2-a06b-3470a27159e7'

// the product's tables (guardrails/adapters/tables.py `Tables`); the code creates any missing one too
var tableSuffixes = [
  'Policies'
  'Idempotency'
  'Audit'
  'AuditByResource'
  'Breakers'
  'PendingFixes'
  'Escalations'
]
var deploymentContainer = 'app-package'
var deadLetterContainer = 'eventgrid-deadletter'
var functionAppName = 'func-guardrails-${token}'

// The guardrail's identity: every ARM, Key Vault, Table Storage and Monitor call is made as it.
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-guardrails-${token}'
  location: location
  tags: tags
}

// Event Grid's identity: writes undeliverable events to the dead-letter container, nothing else.
resource eventGridIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-guardrails-eventgrid-${token}'
  location: location
  tags: tags
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: the default action is Deny with enablePrivateNetworking; without a VNet the function app reaches its storage over the public endpoint (identity-only, keys disabled)
  // checkov:skip=CKV_AZURE_59: public network access stays 'Enabled' so the networkAcls (Deny + trusted services for Event Grid dead-lettering) apply with enablePrivateNetworking
  // checkov:skip=CKV_AZURE_43: the name is computed ('stguardrails' + 12 lowercase characters of uniqueString): 24 lowercase alphanumerics, which checkov cannot evaluate
  // checkov:skip=CKV_AZURE_206: LRS is enough: policies are re-synced from metadata/ and audit rows are also logs; GRS doubles the cost of every audit write
  name: 'stguardrails${take(token, 12)}'
  location: location
  tags: tags
  sku: {
    name: 'Standard_LRS'
  }
  kind: 'StorageV2'
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    // with enablePrivateNetworking: reachable through private endpoints, plus trusted Azure services (Event
    // Grid dead-lettering with the system identity of each topic, deadletter-writer.bicep); else denied. The one baseline
    // setting (metadata/policies/storage-private.yaml) the account does not meet: the guardrail reports it
    // and never fixes it (GUARDRAILS_OWN_RESOURCE_IDS below); allowBlobPublicAccess above meets the other
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: enablePrivateNetworking ? 'Deny' : 'Allow'
    }
    encryption: {
      requireInfrastructureEncryption: true
      keySource: 'Microsoft.Storage'
      services: {
        blob: {
          enabled: true
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource packageContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainer
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetters 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainer
  properties: {
    publicAccess: 'None'
  }
}

// the dead-letter container's lifecycle: blobs older than deadLetterRetentionDays are deleted (the
// replay then drops their state rows); nothing else in the account is touched
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'dead-letter-retention'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${deadLetterContainer}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: deadLetterRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for suffix in tableSuffixes: {
  parent: tableService
  name: '${tablePrefix}${suffix}'
}]

// the function's identity: tables (policy, audit, ...), the deployment package and the host's blobs
resource tableRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource blobRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Event Grid's identity: the dead-letter container only
resource deadLetterRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetters.id, eventGridIdentity.id, storageBlobDataContributor)
  scope: deadLetters
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: eventGridIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// the policy table (one of `tables` above): the only table the deployer may touch
resource policiesTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' existing = {
  parent: tableService
  name: '${tablePrefix}Policies'
}

// the deployer: the post-provision metadata sync writes the policy table, and only that table (never the
// audit rows, breakers, escalations or idempotency records the guardrail keeps beside it)
resource deployerTableRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(policiesTable.id, deployerPrincipalId, storageTableDataContributor)
  scope: policiesTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
    description: 'guardrails: the post-provision metadata sync writes the policy table, no other table'
  }
  dependsOn: [
    tables
  ]
}

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-guardrails-${token}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 90
    features: {
      disableLocalAuth: true // queries and ingestion with Entra ID only (no workspace shared keys)
    }
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-guardrails-${token}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    DisableLocalAuth: true // Entra ID (managed identity) ingestion only
  }
}

resource insightsRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(insights.id, identity.id, monitoringMetricsPublisher)
  scope: insights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// decision events (guardrails/adapters/eventgrid.py): Entra ID only, the identity may send and nothing else
resource decisions 'Microsoft.EventGrid/topics@2022-06-15' = {
  // checkov:skip=CKV_AZURE_193: public network access is Disabled with enablePrivateNetworking (the app publishes through a private endpoint); without a VNet it publishes over the public endpoint, with an Entra token only (local auth disabled)
  name: 'evgt-guardrails-decisions-${token}'
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned' // delivery to subscribers' dead-letter storage with an identity
    userAssignedIdentities: {
      '${eventGridIdentity.id}': {}
    }
  }
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: enablePrivateNetworking ? 'Disabled' : 'Enabled'
  }
}

resource decisionsRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(decisions.id, identity.id, eventGridDataSender)
  scope: decisions
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

module network 'network.bicep' = if (enablePrivateNetworking) {
  name: 'guardrails-network'
  params: {
    location: location
    tags: tags
    token: token
    storageAccountId: storage.id
    governedVaultIds: governedVaultIds
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy is the zoneRedundant parameter: Flex Consumption offers it only in some regions
  name: 'plan-guardrails-${token}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_213: Flex Consumption instances are managed by the platform's scale controller; the anonymous GET /api/health route serves external probes
  // checkov:skip=CKV_AZURE_17: client certificates would break Event Grid's webhook delivery to the function
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales per instance (maximumInstanceCount); there is no worker count to set
  // checkov:skip=CKV_AZURE_222: Event Grid cannot deliver to a private endpoint; with enablePrivateNetworking the public endpoint only admits the AzureEventGrid service tag
  // checkov:skip=CKV_AZURE_78: FTP is off through basicPublishingCredentialsPolicies (ftp and scm: allow false); siteConfig.ftpsState, which this check reads, is refused by ARM on a Flex Consumption site (400, ExtendedCode 51021: "Site.SiteConfig.FtpsState ... for Flex Consumption sites is invalid")
  name: functionAppName
  location: location
  tags: union(tags, {
    'azd-service-name': 'guardrails'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertMode: 'Optional'
    // Event Grid cannot push to a private endpoint: the public endpoint stays, restricted to the
    // AzureEventGrid service tag when enablePrivateNetworking (the check API is reached privately)
    publicNetworkAccess: 'Enabled'
    virtualNetworkSubnetId: enablePrivateNetworking ? network.outputs.appSubnetId : null
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      remoteDebuggingEnabled: false
      vnetRouteAllEnabled: enablePrivateNetworking
      ipSecurityRestrictionsDefaultAction: enablePrivateNetworking ? 'Deny' : 'Allow'
      ipSecurityRestrictions: enablePrivateNetworking ? [
        {
          name: 'event-grid'
          action: 'Allow'
          tag: 'ServiceTag'
          ipAddress: 'AzureEventGrid'
          priority: 100
        }
      ] : []
      scmIpSecurityRestrictionsDefaultAction: enablePrivateNetworking ? 'Deny' : 'Allow'
      appSettings: [
        // identity-based host storage: no connection string, no key
        {
          name: 'AzureWebJobsStorage__accountName'
          value: storage.name
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identity.properties.clientId
        }
        {
          name: 'AZURE_CLIENT_ID' // DefaultAzureCredential picks the user-assigned identity
          value: identity.properties.clientId
        }
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: insights.properties.ConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'Authorization=AAD;ClientId=${identity.properties.clientId}'
        }
        {
          name: 'PYTHON_THREADPOOL_THREAD_COUNT'
          value: '2'
        }
        {
          name: 'GUARDRAILS_TABLES_ENDPOINT'
          value: storage.properties.primaryEndpoints.table
        }
        {
          name: 'GUARDRAILS_TABLE_PREFIX'
          value: tablePrefix
        }
        {
          name: 'GUARDRAILS_DECISION_TOPIC_ENDPOINT' // no key: Entra token of the identity
          value: decisions.properties.endpoint
        }
        {
          name: 'GUARDRAILS_CREDENTIAL'
          value: 'default'
        }
        {
          // the guardrail's own writes come back as events: ignored with zero ARM calls
          name: 'GUARDRAILS_OWN_PRINCIPAL_IDS'
          value: '${identity.properties.principalId},${identity.properties.clientId}'
        }
        {
          // the deployment's own resources of a governed type (the storage account, whose public network
          // access stays Enabled: the app reaches it without private networking, Event Grid dead-letters
          // into it): findings on them are reported, never fixed (storage-private would take the app down)
          name: 'GUARDRAILS_OWN_RESOURCE_IDS'
          value: storage.id
        }
        {
          // role assignments made AT these groups (no topic delivers them): checked by the sweep
          name: 'GUARDRAILS_SWEEP_MANAGEMENT_GROUPS'
          value: join(sweepManagementGroupIds, ',')
        }
        {
          // the sweep checks that every subscription's system topic still delivers to this app
          name: 'GUARDRAILS_FUNCTION_APP_ID'
          value: resourceId('Microsoft.Web/sites', functionAppName)
        }
        {
          // their system topics are checked by the sweep too
          name: 'GUARDRAILS_GOVERNED_VAULT_IDS'
          value: join(governedVaultIds, ',')
        }
        {
          name: 'GUARDRAILS_GOVERNED_ML_WORKSPACE_IDS'
          value: join(governedMlWorkspaceIds, ',')
        }
        {
          name: 'GUARDRAILS_SWEEP_SCHEDULE'
          value: sweepSchedule
        }
        {
          name: 'GUARDRAILS_EXPIRY_SCHEDULE'
          value: expirySchedule
        }
        {
          name: 'GUARDRAILS_DECISION_OUTBOX_SCHEDULE'
          value: decisionOutboxSchedule
        }
        {
          // dead-letter replay: Event Grid's undeliverable events, read with the identity's blob role
          name: 'GUARDRAILS_DEAD_LETTER_ENDPOINT'
          value: storage.properties.primaryEndpoints.blob
        }
        {
          name: 'GUARDRAILS_DEAD_LETTER_CONTAINER'
          value: deadLetterContainer
        }
        {
          name: 'GUARDRAILS_DEAD_LETTER_SCHEDULE'
          value: deadLetterSchedule
        }
      ]
    }
  }
  dependsOn: [
    blobRole
    tableRole
    insightsRole
    decisionsRole
  ]
}

// no basic-auth publishing (FTP or SCM): deployments authenticate with Entra ID
resource ftpAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

// App Service authentication (optional): validates a caller's Entra token and passes the principal as
// X-MS-CLIENT-PRINCIPAL (site-auth.bicep); off unless authClientId is set
module siteAuth 'site-auth.bicep' = if (!empty(authClientId)) {
  name: 'guardrails-site-auth'
  params: {
    siteName: site.name
    clientId: authClientId
  }
}

module siteEndpoint 'private-endpoint.bicep' = if (enablePrivateNetworking) {
  name: 'guardrails-pe-site'
  params: {
    location: location
    tags: tags
    name: 'pe-${functionAppName}'
    subnetId: network.outputs.endpointSubnetId
    targetId: site.id
    groupId: 'sites'
    dnsZoneId: network.outputs.sitesZoneId
  }
}

// the decision topic's publishing endpoint inside the VNet (delivery to its subscribers is Event Grid's, unaffected)
module decisionsEndpoint 'private-endpoint.bicep' = if (enablePrivateNetworking) {
  name: 'guardrails-pe-decisions'
  params: {
    location: location
    tags: tags
    name: 'pe-${decisions.name}'
    subnetId: network.outputs.endpointSubnetId
    targetId: decisions.id
    groupId: 'topic'
    dnsZoneId: network.outputs.topicZoneId
  }
}

output functionAppId string = site.id
output functionAppName string = site.name
output identityPrincipalId string = identity.properties.principalId
output identityClientId string = identity.properties.clientId
output eventGridIdentityId string = eventGridIdentity.id
output storageAccountId string = storage.id
output deadLetterContainer string = deadLetterContainer
output tablesEndpoint string = storage.properties.primaryEndpoints.table
