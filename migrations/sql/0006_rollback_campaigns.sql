-- A rollback campaign names the aborted campaign whose devices it rolls back.
ALTER TABLE campaigns ADD COLUMN rollback_of uuid;
