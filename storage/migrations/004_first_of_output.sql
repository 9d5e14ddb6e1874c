-- io_pairs.first_of_output: the smallest id among the pairs of the row's function (under its
-- config key) that have the row's output; the row's own id when no smaller pair shares it.
-- sample_io writes it with the pairs (a function's pairs are always written together), so the
-- prompts stage reads it with the row instead of grouping every pair of the shard's functions,
-- a scan that grew with the table.
--
-- Rows stored before have NULL, and the prompts stage computes theirs as it used to. They are
-- not filled here: sample_io's version 3 came with this column, so the prompts stage reads
-- only pairs written by the new code, and a fill would rewrite the whole table for nothing.

ALTER TABLE io_pairs ADD COLUMN first_of_output VARCHAR;
