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
    /// A read model's page with its items in the API's shape (the first item that
    /// cannot be shown fails the page).
    pub fn from_view<V, E>(page: ota_projections::Page<V>, item: impl FnMut(V) -> Result<T, E>) -> Result<Self, E> {
        Ok(Page {
            items: page.items.into_iter().map(item).collect::<Result<_, _>>()?,
            total: page.total,
            page: page.page,
            page_size: page.page_size,
        })
    }
}
