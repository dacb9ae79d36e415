-- Issue 11 (registry screens): a vehicle is deactivated (停用: sold, scrapped, off the road)
-- rather than deleted once it has history. Deactivating also clears must_connect (the 入网率
-- denominator); the terminal stays registered so its messages are still stored.
ALTER TABLE vehicles ADD COLUMN IF NOT EXISTS active boolean NOT NULL DEFAULT true;
