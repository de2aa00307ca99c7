-- The rows waiting to be tried again after the broker refused them (a failed attempt leaves
-- them unsent with attempts > 0): the relay's hold reads only these. Through the index of all
-- unsent rows it walked every row stamped since the last vacuum, at every read (5 ms at
-- 20,000 stamped rows, most of the read).
CREATE INDEX outbox_retrying ON outbox (recipient, outbox_id) WHERE sent_at IS NULL AND attempts > 0;
