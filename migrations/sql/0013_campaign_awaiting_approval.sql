-- Whether a campaign waits for an operator's approval of its next wave, so a read
-- answers in the same shape as a command's result. Existing rows are filled by
-- replaying the campaigns read model (`ota replay campaigns`); until then a
-- campaign that was already waiting reads false.
ALTER TABLE campaigns ADD COLUMN awaiting_approval boolean NOT NULL DEFAULT false;
