//! JWT authentication. The tenant and the user come from the token's claims,
//! never from headers the caller sets; a role claim guards admin operations.

use secrecy::ExposeSecret;
use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::Value;

use super::config::{AuthMode, JwtSettings};
use super::error::ApiError;

/// Who is calling, as proven by the token.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub tenant_id: String,
    pub user_id: String,
    pub roles: Vec<String>,
    pub is_admin: bool,
}

impl Principal {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "this operation needs the admin role".into(),
            ))
        }
    }
}

/// The outcome of authenticating one request, stored in its extensions by the
/// context middleware and read by the [`Principal`] extractor.
#[derive(Debug, Clone)]
pub struct AuthOutcome(pub Result<Principal, String>);

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<AuthOutcome>() {
            Some(AuthOutcome(Ok(p))) => Ok(p.clone()),
            Some(AuthOutcome(Err(reason))) => Err(ApiError::Unauthorized(reason.clone())),
            None => Err(ApiError::Unauthorized("authentication is required".into())),
        }
    }
}

/// Longest bearer token read; a token's header and claims are parsed before its
/// signature is checked, so their size is bounded first.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// What a token must carry: `exp` and `sub` always, `nbf` honoured when present,
/// and `iss`/`aud` required (not only compared) when an issuer or audience is set.
fn validation(alg: Algorithm, settings: &JwtSettings) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = 30;
    v.validate_nbf = true;
    let mut required = vec!["exp", "sub"];
    if let Some(iss) = &settings.issuer {
        v.set_issuer(&[iss]);
        required.push("iss");
    }
    match &settings.audience {
        Some(aud) => {
            v.set_audience(&[aud]);
            required.push("aud");
        }
        None => v.validate_aud = false,
    }
    v.set_required_spec_claims(&required);
    v
}

pub fn valid_tenant_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
}

pub struct Authenticator {
    mode: Mode,
    admin_role: String,
}

enum Mode {
    Disabled,
    Jwt(Box<JwtKeys>),
}

struct JwtKeys {
    settings: JwtSettings,
    hs256: Option<DecodingKey>,
    rs256: Option<DecodingKey>,
    jwks: HashMap<String, (Algorithm, DecodingKey)>,
    jwks_default: Option<(Algorithm, DecodingKey)>,
}

impl Authenticator {
    pub fn new(mode: &AuthMode, admin_role: &str) -> anyhow::Result<Self> {
        let mode = match mode {
            AuthMode::Disabled => Mode::Disabled,
            AuthMode::Jwt(settings) => {
                let hs256 = settings
                    .hs256_secret
                    .as_ref()
                    .map(|s| DecodingKey::from_secret(s.expose_secret().as_bytes()));
                let rs256 = match &settings.rs256_public_key_file {
                    Some(path) => {
                        let pem = std::fs::read(path).map_err(|e| {
                            anyhow::anyhow!(
                                "setting FAAS_JWT_RS256_PUBLIC_KEY_FILE: {}: {e}",
                                path.display()
                            )
                        })?;
                        Some(DecodingKey::from_rsa_pem(&pem).map_err(|e| {
                            anyhow::anyhow!("setting FAAS_JWT_RS256_PUBLIC_KEY_FILE: not an RSA public key in PEM: {e}")
                        })?)
                    }
                    None => None,
                };
                let mut jwks = HashMap::new();
                let mut jwks_default = None;
                if let Some(path) = &settings.jwks_file {
                    let text = std::fs::read_to_string(path).map_err(|e| {
                        anyhow::anyhow!("setting FAAS_JWT_JWKS_FILE: {}: {e}", path.display())
                    })?;
                    let set: JwkSet = serde_json::from_str(&text).map_err(|e| {
                        anyhow::anyhow!("setting FAAS_JWT_JWKS_FILE: not a JWK set: {e}")
                    })?;
                    for jwk in &set.keys {
                        let key = DecodingKey::from_jwk(jwk).map_err(|e| {
                            anyhow::anyhow!("setting FAAS_JWT_JWKS_FILE: unusable key: {e}")
                        })?;
                        let alg = match &jwk.algorithm {
                            jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                            _ => anyhow::bail!(
                                "setting FAAS_JWT_JWKS_FILE: only RSA keys (RS256) are supported"
                            ),
                        };
                        match &jwk.common.key_id {
                            Some(kid) => {
                                jwks.insert(kid.clone(), (alg, key.clone()));
                            }
                            None => jwks_default = Some((alg, key.clone())),
                        }
                        if set.keys.len() == 1 {
                            jwks_default = Some((alg, key));
                        }
                    }
                }
                Mode::Jwt(Box::new(JwtKeys {
                    settings: settings.clone(),
                    hs256,
                    rs256,
                    jwks,
                    jwks_default,
                }))
            }
        };
        Ok(Self {
            mode,
            admin_role: admin_role.to_string(),
        })
    }

    pub fn is_disabled(&self) -> bool {
        matches!(self.mode, Mode::Disabled)
    }

    /// Authenticates from the Authorization header (or, with auth disabled,
    /// from the tenant and user headers).
    pub fn authenticate(&self, headers: &http::HeaderMap) -> Result<Principal, String> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        match &self.mode {
            Mode::Disabled => {
                let tenant = header("x-tenant-id")
                    .filter(|s| !s.is_empty())
                    .unwrap_or("default");
                if !valid_tenant_id(tenant) {
                    return Err("X-Tenant-ID is not a valid tenant id".into());
                }
                let user = header("x-user-id")
                    .filter(|s| !s.is_empty())
                    .unwrap_or("anonymous");
                Ok(Principal {
                    tenant_id: tenant.to_string(),
                    user_id: user.chars().take(256).collect(),
                    roles: vec![self.admin_role.clone()],
                    is_admin: true,
                })
            }
            Mode::Jwt(keys) => {
                let JwtKeys {
                    settings,
                    hs256,
                    rs256,
                    jwks,
                    jwks_default,
                } = keys.as_ref();
                let auth = header("authorization").ok_or("missing bearer token")?;
                let token = auth
                    .strip_prefix("Bearer ")
                    .or_else(|| auth.strip_prefix("bearer "))
                    .ok_or("the Authorization header must be \"Bearer <token>\"")?
                    .trim();
                if token.len() > MAX_TOKEN_BYTES {
                    return Err(format!(
                        "the token is longer than the limit of {MAX_TOKEN_BYTES} bytes"
                    ));
                }
                let head = decode_header(token).map_err(|_| "malformed token".to_string())?;
                let key = match head.alg {
                    Algorithm::HS256 => hs256.as_ref().ok_or("HS256 tokens are not accepted")?,
                    Algorithm::RS256 => match head.kid.as_ref().and_then(|k| jwks.get(k)) {
                        Some((_, k)) => k,
                        None => rs256
                            .as_ref()
                            .or(jwks_default.as_ref().map(|(_, k)| k))
                            .ok_or("no key matches the token")?,
                    },
                    other => return Err(format!("tokens signed with {other:?} are not accepted")),
                };
                let validation = validation(head.alg, settings);
                let data =
                    decode::<HashMap<String, Value>>(token, key, &validation).map_err(|e| {
                        use jsonwebtoken::errors::ErrorKind;
                        match e.kind() {
                            ErrorKind::ExpiredSignature => "the token has expired".to_string(),
                            ErrorKind::ImmatureSignature => {
                                "the token is not valid yet (nbf)".to_string()
                            }
                            ErrorKind::InvalidSignature => {
                                "the token's signature is not valid".to_string()
                            }
                            ErrorKind::InvalidIssuer => {
                                "the token's issuer is not accepted".to_string()
                            }
                            ErrorKind::InvalidAudience => {
                                "the token's audience is not accepted".to_string()
                            }
                            ErrorKind::MissingRequiredClaim(c) => {
                                format!("the token lacks the {c} claim")
                            }
                            _ => "the token is not valid".to_string(),
                        }
                    })?;
                let claims = data.claims;
                let tenant = claims
                    .get(&settings.tenant_claim)
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        format!("the token lacks the {} claim", settings.tenant_claim)
                    })?;
                if !valid_tenant_id(tenant) {
                    return Err(format!(
                        "the token's {} claim is not a valid tenant id",
                        settings.tenant_claim
                    ));
                }
                let user = claims
                    .get("sub")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let roles: Vec<String> = match claims.get(&settings.role_claim) {
                    Some(Value::Array(a)) => a
                        .iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect(),
                    Some(Value::String(s)) => s.split_whitespace().map(String::from).collect(),
                    _ => vec![],
                };
                let is_admin = roles.iter().any(|r| r == &self.admin_role);
                Ok(Principal {
                    tenant_id: tenant.to_string(),
                    user_id: user.chars().take(256).collect(),
                    roles,
                    is_admin,
                })
            }
        }
    }
}
