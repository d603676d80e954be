-- Migration 029: the trail view never compares batch numbers of two chains. A batch number
-- counts one chain's writes, so "the latest batch" means something inside a chain only: a row
-- in a chain made up with batch 1000000 used to shadow the real row of every other chain.
-- Now, per (event, stage): inside each chain, the highest authority and then the latest
-- batch (a re-read written again); across chains, the highest authority, then the chain that
-- wrote it first (`written`), then the chain id. The view is a reader's convenience, never
-- proof: whoever can write the store can write any authority or write time, and only
-- `stampline audit verify` (every chain from batch 1, accounted for by a published head)
-- tells a made-up chain from a real one.
CREATE OR REPLACE VIEW {db}.trail AS
SELECT * FROM (
    SELECT *, emitted, prev_emitted, ingested, broker_time FROM {db}.observations
    ORDER BY event_id, stage, chain_id, authority DESC, batch DESC
    LIMIT 1 BY event_id, stage, chain_id
)
ORDER BY event_id, stage, authority DESC, written, chain_id
LIMIT 1 BY event_id, stage
