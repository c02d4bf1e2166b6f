-- Continuous campaigns, found straight from the event store (a read model may not
-- show a campaign created a moment ago when a device's inventory event arrives).
CREATE INDEX events_continuous_campaigns ON events (aggregate_id)
    WHERE aggregate_type = 'Campaign' AND event_type = 'CampaignCreated'
      AND (payload -> 'CampaignCreated' -> 'target' ->> 'continuous') = 'true';
