//! The hawkBit Direct Device Integration (DDI) protocol, without I/O: what goes
//! on the wire, how device feedback maps onto update commands, how a poll's
//! answer is shaped, and how download URLs are signed. The HTTP edge lives in
//! `ota-api`; everything it decides is decided here.

pub mod feedback;
pub mod instruction;
pub mod links;
pub mod signed_url;
pub mod wire;

/// The one tenant there is for now; DDI paths carry it and match it case-insensitively.
pub const DEFAULT_TENANT: &str = "default";

pub use feedback::{cancel_answer, deployment_effect, progress_percent, CancelAnswer, FeedbackEffect};
pub use instruction::{change_token, download_and_update, polling_sleep, DeliveryMode};
pub use links::Links;
pub use signed_url::{SignatureError, UrlSigner};
