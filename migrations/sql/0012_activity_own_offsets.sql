-- The activity projection reads how far it has applied each aggregate from its own
-- rows (one per event, keyed by aggregate and sequence); its offset rows are dead.
DELETE FROM projection_offsets WHERE projection = 'activity';
