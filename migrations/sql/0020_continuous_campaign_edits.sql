-- A draft edited into a continuous campaign is found as one created so
-- (the process manager's continuous_campaigns reads both, by index).
CREATE INDEX events_continuous_campaign_edits ON events (aggregate_id)
    WHERE aggregate_type = 'Campaign' AND event_type = 'CampaignEdited'
      AND (payload -> 'CampaignEdited' -> 'target' ->> 'continuous') = 'true';
