// App Service authentication (Easy Auth) in front of the function app, with Microsoft Entra ID: the platform
// validates a caller's token and passes the principal as X-MS-CLIENT-PRINCIPAL, stripping a caller-supplied one
// (guardrails/checks/principal.py trusts the header only then: WEBSITE_AUTH_ENABLED). Requests without a token
// still reach the functions (AllowAnonymous): Event Grid's deliveries to /runtime/webhooks/eventgrid carry none,
// and the function keys keep guarding every route; a request with an invalid token is refused (401).
param siteName string
@description('Client id of the Entra app registration whose tokens callers present (audience api://<id> or <id>).')
param clientId string

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: siteName
}

resource auth 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13: checkov reads the retired v1 'authsettings' shape (properties.enabled); authsettingsV2 turns authentication on with platform.enabled, set below
  // checkov:skip=CKV_AZURE_63: checkov applies its 'web' site config checks to every Microsoft.Web/sites/config; authsettingsV2 has no HTTP logging setting
  // checkov:skip=CKV_AZURE_65: checkov applies its 'web' site config checks to every Microsoft.Web/sites/config; authsettingsV2 has no detailed errors setting
  // checkov:skip=CKV_AZURE_66: checkov applies its 'web' site config checks to every Microsoft.Web/sites/config; authsettingsV2 has no request tracing setting
  // checkov:skip=CKV_AZURE_80: checkov applies its 'web' site config checks to every Microsoft.Web/sites/config; authsettingsV2 has no .NET version (the app is Python)
  // checkov:skip=CKV_AZURE_88: checkov applies its 'web' site config checks to every Microsoft.Web/sites/config; authsettingsV2 has no storage mounts (Flex Consumption has none either)
  // checkov:skip=CKV_AZURE_222: checkov applies its site checks to every Microsoft.Web/sites/config; the site's own public access is suppressed in app.bicep (Event Grid delivery)
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: false
      unauthenticatedClientAction: 'AllowAnonymous'
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: clientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${clientId}'
            clientId
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}
