//! The API's representation of each resource: one JSON shape per resource, the
//! same in a command's answer, a read, and a list's items, whatever it is built
//! from (the aggregate a command just changed, or a read model). Routes build
//! these and nothing else; the types are the OpenAPI schemas.

pub mod api_key;
pub mod campaign;
pub mod device;
pub mod firmware;
pub mod page;
pub mod rollback;
pub mod update;

pub use api_key::ApiKey;
pub use campaign::Campaign;
pub use device::Device;
pub use firmware::Firmware;

pub use page::Page;
pub use rollback::Rollback;
pub use update::DeviceUpdate;
