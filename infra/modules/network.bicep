// Optional private network: the function app's outbound traffic through a VNet (Flex Consumption
// integration, subnet delegated to Microsoft.App/environments) and private endpoints for the product's
// storage (blob, table, queue), the decision topic and the governed Key Vaults, whose public access the
// guardrails turn off.
param location string
param tags object
param token string
param storageAccountId string
param governedVaultIds array

var storageSuffix = environment().suffixes.storage
var zones = {
  blob: 'privatelink.blob.${storageSuffix}'
  table: 'privatelink.table.${storageSuffix}'
  queue: 'privatelink.queue.${storageSuffix}'
  vault: 'privatelink.vaultcore.azure.net'
  sites: 'privatelink.azurewebsites.net'
  topic: 'privatelink.eventgrid.azure.net'
}
var storageGroups = [
  'blob'
  'table'
  'queue'
]

resource nsg 'Microsoft.Network/networkSecurityGroups@2024-01-01' = {
  name: 'nsg-guardrails-${token}'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-01-01' = {
  name: 'vnet-guardrails-${token}'
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        '10.40.0.0/16'
      ]
    }
    subnets: [
      {
        name: 'app'
        properties: {
          addressPrefix: '10.40.1.0/24'
          networkSecurityGroup: {
            id: nsg.id
          }
          delegations: [
            {
              name: 'flex'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: 'endpoints'
        properties: {
          addressPrefix: '10.40.2.0/24'
          networkSecurityGroup: {
            id: nsg.id
          }
          privateEndpointNetworkPolicies: 'Enabled'
        }
      }
    ]
  }
}

var zoneNames = [for z in items(zones): z.value]

resource dnsZones 'Microsoft.Network/privateDnsZones@2020-06-01' = [for name in zoneNames: {
  name: name
  location: 'global'
  tags: tags
}]

resource dnsLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = [for i in range(0, length(zoneNames)): {
  parent: dnsZones[i]
  name: 'vnet-guardrails'
  location: 'global'
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}]

module storageEndpoints 'private-endpoint.bicep' = [for g in storageGroups: {
  name: 'guardrails-pe-st-${g}'
  params: {
    location: location
    tags: tags
    name: 'pe-${last(split(storageAccountId, '/'))}-${g}'
    subnetId: vnet.properties.subnets[1].id
    targetId: storageAccountId
    groupId: g
    dnsZoneId: resourceId('Microsoft.Network/privateDnsZones', zones[g])
  }
  dependsOn: [
    dnsZones
  ]
}]

module vaultEndpoints 'private-endpoint.bicep' = [for id in governedVaultIds: {
  name: 'guardrails-pe-kv-${uniqueString(id)}'
  params: {
    location: location
    tags: tags
    name: 'pe-${last(split(id, '/'))}'
    subnetId: vnet.properties.subnets[1].id
    targetId: id
    groupId: 'vault'
    dnsZoneId: resourceId('Microsoft.Network/privateDnsZones', zones.vault)
  }
  dependsOn: [
    dnsZones
  ]
}]

output appSubnetId string = vnet.properties.subnets[0].id
output endpointSubnetId string = vnet.properties.subnets[1].id
output sitesZoneId string = resourceId('Microsoft.Network/privateDnsZones', zones.sites)
output topicZoneId string = resourceId('Microsoft.Network/privateDnsZones', zones.topic)
