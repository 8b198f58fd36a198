//! Which credential goes in which header, decided once from the resolved settings.
//!
//! Since November 2026 a new gateway (and the `default` gateway, created on the first
//! request) has authentication on and cannot turn it off (wire notes 10.2). On the compat
//! endpoint the gateway then wants `cf-aig-authorization: Bearer <Cloudflare API token>`;
//! on the REST endpoint the same token in `Authorization` is what authenticates. So the API
//! token a new user already set is sent for the gateway too, and a separate gateway token
//! is only needed by those who want one. Every request, the model list and `cfgate status`
//! read the same [`AuthPlan`], so what status says is what is sent.

use secrecy::SecretString;
use serde::Serialize;

use crate::config::{ENV_GATEWAY_TOKEN, ENV_TOKEN, Endpoint, Settings};
use crate::protocol::AuthHeader;

/// A credential cfgate holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    /// `api_token` (`CLOUDFLARE_API_TOKEN`).
    ApiToken,
    /// `gateway_token` (`CLOUDFLARE_AI_GATEWAY_TOKEN`).
    GatewayToken,
}

impl Credential {
    /// The setting and its environment variable, as a user would look for them.
    pub fn describe(self) -> &'static str {
        match self {
            Credential::ApiToken => "api_token (CLOUDFLARE_API_TOKEN)",
            Credential::GatewayToken => "gateway_token (CLOUDFLARE_AI_GATEWAY_TOKEN)",
        }
    }

    pub fn setting(self) -> &'static str {
        match self {
            Credential::ApiToken => "api_token",
            Credential::GatewayToken => "gateway_token",
        }
    }

    pub fn env(self) -> &'static str {
        match self {
            Credential::ApiToken => ENV_TOKEN,
            Credential::GatewayToken => ENV_GATEWAY_TOKEN,
        }
    }
}

/// What a chat request sends in each of the two authorization headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AuthPlan {
    pub endpoint: Endpoint,
    /// `Authorization`: the Cloudflare token (Workers AI, the REST endpoint), or the key a
    /// vendor sees when no key is stored in the gateway. `None` with stored keys on compat.
    pub authorization: Option<Credential>,
    /// `cf-aig-authorization`: the gateway's own authentication (compat only).
    pub cf_aig_authorization: Option<Credential>,
}

impl AuthPlan {
    /// The rules of the module doc, as a pure function of the settings that decide them.
    pub fn new(endpoint: Endpoint, byok: bool, gateway_token_set: bool) -> AuthPlan {
        let gateway_credential = if gateway_token_set {
            Credential::GatewayToken
        } else {
            Credential::ApiToken
        };
        match endpoint {
            Endpoint::Rest => AuthPlan {
                endpoint,
                authorization: Some(Credential::ApiToken),
                cf_aig_authorization: None,
            },
            Endpoint::Compat => AuthPlan {
                endpoint,
                authorization: (!byok).then_some(Credential::ApiToken),
                cf_aig_authorization: Some(gateway_credential),
            },
        }
    }

    /// One line for `cfgate status` and error hints: `Authorization: api_token (...); ...`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = self.authorization {
            parts.push(format!("Authorization: {}", c.describe()));
        }
        if let Some(c) = self.cf_aig_authorization {
            parts.push(format!("cf-aig-authorization: {}", c.describe()));
        }
        parts.join("; ")
    }
}

impl AuthPlan {
    /// The plan as `cfgate/status` reports it.
    pub fn headers(&self) -> Vec<AuthHeader> {
        let entry = |header: &str, c: Credential| AuthHeader {
            header: header.to_string(),
            setting: c.setting().to_string(),
            env: c.env().to_string(),
        };
        let mut headers = Vec::new();
        if let Some(c) = self.authorization {
            headers.push(entry("Authorization", c));
        }
        if let Some(c) = self.cf_aig_authorization {
            headers.push(entry("cf-aig-authorization", c));
        }
        headers
    }
}

impl Settings {
    pub fn auth_plan(&self) -> AuthPlan {
        AuthPlan::new(self.endpoint, self.byok, self.gateway_token.is_some())
    }

    /// The secret behind a credential. The API token may be empty only where the plan does
    /// not use it (stored keys on compat with a gateway token).
    pub fn secret(&self, credential: Credential) -> Option<SecretString> {
        match credential {
            Credential::ApiToken => Some(self.api_token.clone()),
            Credential::GatewayToken => self.gateway_token.clone(),
        }
    }

    /// The tokens to send as `Authorization` and `cf-aig-authorization`.
    pub fn auth_tokens(&self) -> (Option<SecretString>, Option<SecretString>) {
        let plan = self.auth_plan();
        (
            plan.authorization.and_then(|c| self.secret(c)),
            plan.cf_aig_authorization.and_then(|c| self.secret(c)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Credential::*;

    #[test]
    fn each_endpoint_sends_each_credential_where_the_gateway_wants_it() {
        // (endpoint, byok, gateway token set) -> (Authorization, cf-aig-authorization)
        let table = [
            (
                Endpoint::Compat,
                false,
                false,
                Some(ApiToken),
                Some(ApiToken),
            ),
            (
                Endpoint::Compat,
                false,
                true,
                Some(ApiToken),
                Some(GatewayToken),
            ),
            (Endpoint::Compat, true, false, None, Some(ApiToken)),
            (Endpoint::Compat, true, true, None, Some(GatewayToken)),
            (Endpoint::Rest, false, false, Some(ApiToken), None),
            (Endpoint::Rest, false, true, Some(ApiToken), None),
            (Endpoint::Rest, true, true, Some(ApiToken), None),
        ];
        for (endpoint, byok, gateway, authorization, aig) in table {
            let plan = AuthPlan::new(endpoint, byok, gateway);
            assert_eq!(
                (plan.authorization, plan.cf_aig_authorization),
                (authorization, aig),
                "{endpoint:?} byok={byok} gateway_token={gateway}"
            );
        }
    }

    #[test]
    fn describes_which_credential_goes_in_which_header() {
        let text = AuthPlan::new(Endpoint::Compat, false, false).describe();
        assert_eq!(
            text,
            "Authorization: api_token (CLOUDFLARE_API_TOKEN); \
             cf-aig-authorization: api_token (CLOUDFLARE_API_TOKEN)"
        );
    }
}
