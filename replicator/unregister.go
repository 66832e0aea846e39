package replicator

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"
)

// sqlUnregister removes a slave's registration unless a worker was heard
// from it within $2 seconds; it returns the seconds since it was last heard
// (NULL when never, or when it was stopped cleanly).
const sqlUnregister = `WITH s AS (
  SELECT name, extract(epoch FROM now() - seen_at)::float8 AS silent FROM replica.slaves WHERE name = $1 FOR UPDATE
), d AS (
  DELETE FROM replica.slaves r USING s WHERE r.name = s.name AND (s.silent IS NULL OR s.silent > $2) RETURNING r.name
)
SELECT s.silent, EXISTS (SELECT 1 FROM d) FROM s`

// ErrSlaveInUse is returned by Unregister for a slave that a daemon applies
// to, or that the configuration still names.
var ErrSlaveInUse = errors.New("slave in use")

// Unregister removes a slave's registration from the master, so that the
// log is purged again without waiting for it. It refuses a slave the
// configuration names (init would register it again) and one a daemon is
// applying to. The slave's own position and data are left as they are.
func Unregister(ctx context.Context, opts Options, name string) error {
	if slices.ContainsFunc(opts.Slaves, func(n Node) bool { return n.Name == name }) {
		return fmt.Errorf("slave %s: %w: the configuration names it; remove it from the configuration first", name, ErrSlaveInUse)
	}
	master, err := openDB(opts.Master.DSN)
	if err != nil {
		return fmt.Errorf("master %s: %w", opts.Master.Name, err)
	}
	defer master.Close()
	var silent sql.NullFloat64
	var deleted bool
	err = master.QueryRowContext(ctx, sqlUnregister, name, staleAfter(opts).Seconds()).Scan(&silent, &deleted)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("slave %s is not registered on master %s", name, opts.Master.Name)
	}
	if err != nil {
		return fmt.Errorf("unregister slave %s on master %s: %w", name, opts.Master.Name, err)
	}
	if !deleted {
		return fmt.Errorf("slave %s: %w: a daemon applied to it %s ago; stop that daemon first",
			name, ErrSlaveInUse, time.Duration(silent.Float64*float64(time.Second)).Round(time.Second))
	}
	return nil
}
