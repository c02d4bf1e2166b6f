//! Pagination shared by every list query.

use serde::Serialize;

pub const MAX_PAGE_SIZE: u32 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// 1-based.
    pub page: u32,
    pub page_size: u32,
}

impl PageRequest {
    pub fn offset(&self) -> i64 {
        i64::from(self.page.saturating_sub(1)) * i64::from(self.page_size)
    }
    pub fn limit(&self) -> i64 {
        i64::from(self.page_size)
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub page: u32,
    pub page_size: u32,
}

/// A read-only transaction over one snapshot. A page's items and its total, or a page and the statistics
/// beside it, are read in one so that they describe the same rows while projection workers write: read
/// apart, a row committed between the two reads shows in one and not in the other.
pub async fn snapshot(pool: &sqlx::PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await
}
