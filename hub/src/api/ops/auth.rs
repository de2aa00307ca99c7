//! Who may use the operator API: a client certificate the exchange CA signed (rustls checked
//! it), registered with the hub and unrevoked, of a role the route admits. Routes say which by
//! the extractor they take: [`Staff`] (operators and the national office) or
//! [`NationalOffice`] (the national office only, e.g. arbitration).

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use certs::serve::Peer;
use certs::{CertInfo, Role};
use schemas::ErrorCode;

use super::{ApiError, error, internal};
use crate::context::Context;
use crate::store;

/// The authenticated, registered, unrevoked client of a request.
async fn registered(parts: &Parts, ctx: &Context) -> Result<CertInfo, ApiError> {
    let Some(Peer(cert)) = parts.extensions.get::<Peer>().cloned() else {
        return Err(error(StatusCode::UNAUTHORIZED, ErrorCode::Forbidden, "a client certificate is required"));
    };
    let mut conn = ctx.pool.acquire().await.map_err(internal)?;
    if !store::certs::serial_admitted(&mut conn, &cert.serial).await.map_err(internal)? {
        return Err(error(
            StatusCode::FORBIDDEN,
            ErrorCode::Revoked,
            "this certificate is not registered, revoked or expired",
        ));
    }
    Ok(cert)
}

fn wrong_role(cert: &CertInfo, admitted: &str) -> ApiError {
    error(
        StatusCode::FORBIDDEN,
        ErrorCode::Forbidden,
        &format!("role {} may not use this route; it admits {admitted}", cert.role.unit()),
    )
}

/// An operator (运维人员) or the national office.
#[derive(Debug, Clone)]
pub struct Staff(pub CertInfo);

impl FromRequestParts<Context> for Staff {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Context) -> Result<Self, ApiError> {
        let cert = registered(parts, ctx).await?;
        match cert.role {
            Role::Operator(_) | Role::National(_) => Ok(Staff(cert)),
            Role::Province(_) | Role::Hub | Role::Server(_) => Err(wrong_role(&cert, "operator, national-office")),
        }
    }
}

/// The national office (教育部) only.
#[derive(Debug, Clone)]
pub struct NationalOffice(pub CertInfo);

impl FromRequestParts<Context> for NationalOffice {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Context) -> Result<Self, ApiError> {
        let cert = registered(parts, ctx).await?;
        match cert.role {
            Role::National(_) => Ok(NationalOffice(cert)),
            Role::Operator(_) | Role::Province(_) | Role::Hub | Role::Server(_) => {
                Err(wrong_role(&cert, "national-office"))
            }
        }
    }
}
