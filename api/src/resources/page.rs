//! One page of a list.

use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Items in the whole list.
    pub total: i64,
    /// 1-based.
    pub page: u32,
    pub page_size: u32,
}

impl<T> Page<T> {
    /// A read model's page with its items in the API's shape.
    pub fn from_view<V>(page: ota_projections::Page<V>, item: impl FnMut(V) -> T) -> Self {
        Page {
            items: page.items.into_iter().map(item).collect(),
            total: page.total,
            page: page.page,
            page_size: page.page_size,
        }
    }
}
