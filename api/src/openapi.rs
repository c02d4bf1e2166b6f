//! The OpenAPI 3.1 description of the HTTP API, generated from the handlers'
//! `#[utoipa::path]` annotations and the types they take and return.
//!
//! What every operation shares is added here once, so no handler can forget it:
//! the security requirement of its part of the API, and the error responses the
//! middleware can answer with (authentication, roles, limits, deadlines, outages),
//! and on every command the `Idempotency-Key` header with its 409 and 422.

use utoipa::openapi::header::Header;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, OpenApi, RefOr, Required, Response, ResponseBuilder};
use utoipa::OpenApi as _;

use crate::error::ErrorBody;

/// Operations of these tags are device-facing (hawkBit DDI); the rest is the management API.
pub const DDI_TAG: &str = "DDI (devices)";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "ota: OTA firmware campaign orchestrator",
        description = "Management API (firmware, campaigns, devices, audit) and the hawkBit DDI device API.\n\n\
            Every management route takes `Authorization: Bearer <token>`, where the token is a JWT \
            (`role` claim: admin, operator, approver, viewer or auditor) or an API key (`ota_<id>_<secret>`). \
            Reads need any role, writes operator or admin, `/audit/*` auditor or admin, `/api-keys` admin. \
            Every error is JSON: `{\"error\": code, \"message\": text, \"request_id\": id}`; \
            every response carries `x-request-id`.\n\n\
            Device routes (tag `DDI (devices)`) take `Authorization: TargetToken <device token>` or \
            `GatewayToken <gateway token>`, exactly as hawkBit does, so SWUpdate, rauc-hawkbit-updater \
            and other hawkBit clients work unchanged. Over HTTPS with `OTA_TLS_CLIENT_CA`, a device may \
            instead present a client certificate whose subject common name is its controller id, and \
            no `Authorization` (mutual TLS).",
        license(name = "Apache-2.0"),
    ),
    tags(
        (name = "firmware", description = "Firmware images: upload (streamed, hashed, optionally signed), read, deprecate, download statistics."),
        (name = "campaigns", description = "Campaigns: target devices, roll out in waves under gates, rates and windows; start, pause, resume, approve, cancel, abort."),
        (name = "devices", description = "The device inventory, single-device updates, rollbacks, status reports and update history."),
        (name = "api-keys", description = "API keys for scripts and integrations (admin only)."),
        (name = "webhooks", description = "Webhook subscriptions by topic, signed deliveries with retries, the delivery log and a test send (admin only)."),
        (name = "audit", description = "The tamper-evident event chain and point-in-time reconstruction (auditor or admin)."),
        (name = "system", description = "Statistics and health."),
        (name = "DDI (devices)", description = "The hawkBit Direct Device Integration API that device clients poll."),
    ),
    components(schemas(ErrorBody)),
)]
struct ApiDoc;

/// The document's frame (info, tags, security schemes) before the routes add their paths.
pub fn base() -> OpenApi {
    let mut doc = ApiDoc::openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT or API key")
                .description(Some(
                    "A JWT signed with OTA_JWT_SECRET (HS256) or by the identity provider of OTA_JWT_PUBLIC_KEY_FILE \
                     (RS256/ES256), with claims sub, role, exp (and iss/aud when configured); or an API key \
                     `ota_<id>_<secret>` issued by POST /api/v1/api-keys.",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        "target_token",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "Authorization",
            "`TargetToken <token>`: the device's own secret, returned once by POST /api/v1/devices \
             or POST /api/v1/devices/{id}/token.",
        ))),
    );
    components.add_security_scheme(
        "gateway_token",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "Authorization",
            "`GatewayToken <OTA_DDI_GATEWAY_TOKEN>`: acts as any device and registers unknown devices on first poll.",
        ))),
    );
    doc
}

/// Adds what every operation shares: its security requirement, the error responses
/// of the middleware in front of it, and on management POSTs the idempotency header.
pub fn finish(mut doc: OpenApi) -> OpenApi {
    for (path, item) in doc.paths.paths.iter_mut() {
        if let Some(post) = item.post.as_mut() {
            if matches!(Part::of(path, post), Part::Management) && crate::idempotency::covers(path) {
                document_idempotency(post);
            }
        }
        let operations = [
            item.get.as_mut(),
            item.put.as_mut(),
            item.post.as_mut(),
            item.delete.as_mut(),
            item.patch.as_mut(),
            item.head.as_mut(),
        ];
        for operation in operations.into_iter().flatten() {
            let part = Part::of(path, operation);
            if operation.security.is_none() {
                operation.security = Some(part.security());
            }
            for (status, description) in part.errors() {
                operation.responses.responses.entry(status.to_owned()).or_insert_with(|| error_response(description));
            }
            // OpenAPI requires a description on every response; a bare `(status, body)` has none.
            for (status, response) in operation.responses.responses.iter_mut() {
                if let RefOr::T(response) = response {
                    if response.description.is_empty() {
                        response.description = reason(status).to_owned();
                    }
                }
            }
        }
    }
    doc
}

/// The optional `Idempotency-Key` header of a command, and the answers it adds.
fn document_idempotency(operation: &mut Operation) {
    let key = ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Makes the command safe to retry: sent again with the same key (by the same caller, on the same \
             method and path), it is not executed again and the first answer is replayed, marked \
             `Idempotent-Replayed: true`. 1 to 255 visible ASCII characters (a UUID is a good key); kept 24 hours.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(crate::idempotency::fingerprint::MAX_KEY_LEN))
                .pattern(Some("^[!-~]+$")),
        ))
        .build();
    operation.parameters.get_or_insert_with(Vec::new).push(RefOr::T(key));
    let retry_after = Header::new(ObjectBuilder::new().schema_type(Type::Integer));
    for (status, description) in [
        ("409", "A request with the same `Idempotency-Key` is still being processed (`idempotency_key_in_flight`); see `Retry-After`."),
        ("422", "The `Idempotency-Key` was used with another request: method, path or body (`idempotency_key_reused`)."),
    ] {
        let response = operation.responses.responses.entry(status.to_owned()).or_insert_with(|| error_response(""));
        if let RefOr::T(response) = response {
            response.description = match response.description.is_empty() {
                true => description.to_owned(),
                false => format!("{} Or: {description}", response.description),
            };
            if status == "409" {
                response.headers.insert("Retry-After".to_owned(), retry_after.clone().into());
            }
        }
    }
}

/// Which part of the API an operation belongs to, by what guards it.
enum Part {
    Management,
    Device,
    Open,
}

impl Part {
    fn of(path: &str, operation: &Operation) -> Part {
        let ddi = operation.tags.as_ref().is_some_and(|tags| tags.iter().any(|t| t == DDI_TAG));
        if ddi {
            Part::Device
        } else if path.starts_with("/api/v1/") && path != "/api/v1/openapi.json" {
            Part::Management
        } else {
            Part::Open
        }
    }

    fn security(&self) -> Vec<SecurityRequirement> {
        match self {
            Part::Management => vec![SecurityRequirement::new("bearer", Vec::<String>::new())],
            Part::Device => vec![
                SecurityRequirement::new("target_token", Vec::<String>::new()),
                SecurityRequirement::new("gateway_token", Vec::<String>::new()),
            ],
            Part::Open => vec![SecurityRequirement::default()],
        }
    }

    fn errors(&self) -> Vec<(&'static str, &'static str)> {
        let mut errors = vec![
            ("400", "The request is malformed: a path, query or body that does not parse (`invalid_request`)."),
            ("429", "Too many requests from this identity, device or address (`rate_limited`); see `Retry-After`."),
            ("500", "A bug or corrupt stored data (`internal`); the cause is in the server log under the request id."),
            ("503", "Postgres, NATS or object storage is unavailable (`unavailable`), or no answer within OTA_REQUEST_TIMEOUT_SECS (`timeout`, with `Retry-After`); retry later, commands with the same `Idempotency-Key`."),
        ];
        match self {
            Part::Management => {
                errors.push(("401", "No valid bearer token or API key (`unauthorized`)."));
                errors.push(("403", "The caller's role may not do this (`forbidden`)."));
            }
            Part::Device => {
                errors.push(("401", "No valid TargetToken or GatewayToken (`unauthorized`)."));
                errors.push(("403", "The token may not act for this device (`forbidden`)."));
                errors.push(("404", "Unknown tenant (`ddi.unknown_tenant`), action or artifact."));
            }
            Part::Open => {}
        }
        errors
    }
}

/// The reason phrase of a status code, as a response's description.
fn reason(status: &str) -> &'static str {
    status
        .parse::<u16>()
        .ok()
        .and_then(|code| axum::http::StatusCode::from_u16(code).ok())
        .and_then(|code| code.canonical_reason())
        .unwrap_or("Response")
}

fn error_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody"))).build(),
        )
        .build()
        .into()
}
