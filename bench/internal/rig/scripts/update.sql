\set id random(1, :rows)
UPDATE test SET n = random(), t = random()::text WHERE id = :id;
