-- Single updates assigned with a timeout, found straight from the event store
-- by the process manager (only they carry origin.timeout_secs).
CREATE INDEX events_single_update_timeouts ON events (aggregate_id)
    WHERE aggregate_type = 'DeviceUpdate' AND event_type = 'UpdateAssigned'
      AND (payload -> 'UpdateAssigned' -> 'origin') ? 'timeout_secs';
