package replicator

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/lib/pq"

	"github.com/goreplica/goreplica/dsn"
)

// ConfigError is a connection that failed because of what the DSN asks
// for, not because the server is down: retrying does not help, the DSN (or
// the server's or pooler's configuration) must change. Hint says what to do.
type ConfigError struct {
	Err  error
	Hint string
}

func (e *ConfigError) Error() string { return e.Err.Error() + ": " + e.Hint }
func (e *ConfigError) Unwrap() error { return e.Err }

// ErrStatementPooling is returned when a connection goes through a pooler
// (pgbouncer pool_mode = statement) that refuses multi-statement
// transactions, which goreplica needs on every node.
var ErrStatementPooling = errors.New("the connection goes through pgbouncer in statement pooling mode, which refuses transactions")

// openDB opens a lib/pq pool (no connection is made yet) whose sessions
// start with settings (SET after connecting, unless the DSN sets them
// itself: a pooler such as pgbouncer refuses unknown startup parameters).
//
// Queries with parameters are sent with lib/pq's binary_parameters, as one
// Parse/Bind/Execute/Sync exchange: lib/pq's default (Parse/Describe/Sync,
// then Bind/Execute/Sync) lets a transaction-mode pooler hand the second
// half to another server connection, whose unnamed statement belongs to
// another client.
func openDB(d string, settings ...map[string]string) (*sql.DB, error) {
	cfg, err := dsn.Config(d)
	if err != nil {
		return nil, err
	}
	cfg.BinaryParameters = true
	c, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		return nil, err
	}
	var set []string
	for _, m := range settings {
		for k, v := range m {
			if _, own := cfg.Runtime[k]; !own {
				set = append(set, "SET "+pq.QuoteIdentifier(k)+" = "+pq.QuoteLiteral(v))
			}
		}
	}
	sort.Strings(set)
	db := sql.OpenDB(&connector{c: c, set: strings.Join(set, "; ")})
	db.SetConnMaxIdleTime(5 * time.Minute)
	return db, nil
}

// connector is lib/pq's connector with settings applied after connecting
// and connection errors explained.
type connector struct {
	c   *pq.Connector
	set string // statements run on every new session
}

func (c *connector) Driver() driver.Driver { return c.c.Driver() }

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	cn, err := c.c.Connect(ctx)
	if err != nil {
		return nil, explainConnect(err)
	}
	if c.set != "" {
		ex, ok := cn.(driver.ExecerContext)
		if !ok {
			cn.Close()
			return nil, errors.New("lib/pq connection cannot execute statements")
		}
		if _, err := ex.ExecContext(ctx, c.set, nil); err != nil {
			cn.Close()
			return nil, fmt.Errorf("session settings (%s): %w", c.set, explainConnect(err))
		}
	}
	return cn, nil
}

// explainConnect turns the connection errors a user can fix in the DSN or
// in the server's configuration into ConfigErrors that say how.
func explainConnect(err error) error {
	if errors.Is(err, pq.ErrSSLNotSupported) {
		return &ConfigError{Err: err, Hint: "add sslmode=disable to this DSN (or sslmode=prefer), or enable ssl on that server"}
	}
	var pe *pq.Error
	if errors.As(err, &pe) && strings.Contains(pe.Message, "unsupported startup parameter") {
		return &ConfigError{Err: err, Hint: "a pooler (pgbouncer) refused a setting this DSN passes as a startup parameter: remove it from the DSN, or list it in pgbouncer's ignore_startup_parameters"}
	}
	if isStatementPooling(err) {
		return &ConfigError{Err: err, Hint: ErrStatementPooling.Error() + ": use pool_mode = session or transaction for goreplica's DSNs"}
	}
	return err
}

// isStatementPooling reports whether err is pgbouncer refusing a
// transaction block in statement pooling mode.
func isStatementPooling(err error) bool {
	return err != nil && strings.Contains(err.Error(), "statement pooling mode")
}

// poolingCheck finds out whether db goes through a pooler that hands a
// client's successive transactions to different server sessions
// (pgbouncer's transaction or statement pooling): it reads the server
// process id from one client connection, then, while that connection is
// still open, from a second one. A session (or no pooler) gives them two
// server processes; a transaction pool lends the first one's, idle between
// its transactions, to the second (pgbouncer reuses the most recently
// used server connection first). It returns "" for a session.
func poolingCheck(ctx context.Context, db *sql.DB) (string, error) {
	a, err := db.Conn(ctx)
	if err != nil {
		return "", err
	}
	defer a.Close()
	b, err := db.Conn(ctx)
	if err != nil {
		return "", err
	}
	defer b.Close()
	var pa, pb int
	if err := a.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pa); err != nil {
		return "", err
	}
	if err := b.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pb); err != nil {
		return "", err
	}
	if pa != pb {
		return "", nil
	}
	return "transaction", nil
}

// ErrTransactionPooledMaster is returned when the master's DSN goes through
// a transaction (or statement) pool: LISTEN needs a session of its own, and
// the daemon's master sessions carry settings.
var ErrTransactionPooledMaster = errors.New("the master DSN goes through a pooler in transaction (or statement) pooling mode: LISTEN needs a session; point it at PostgreSQL directly or at a pgbouncer pool with pool_mode = session (slaves may use transaction pooling)")

// CheckMasterPooling returns ErrTransactionPooledMaster (wrapped with the
// master's name) when the master's DSN goes through a transaction or
// statement pool.
func CheckMasterPooling(ctx context.Context, master Node) error {
	db, err := openDB(master.DSN)
	if err != nil {
		return fmt.Errorf("master %s: %w", master.Name, err)
	}
	defer db.Close()
	mode, err := poolingCheck(ctx, db)
	if err != nil {
		return fmt.Errorf("master %s: %w", master.Name, err)
	}
	if mode != "" {
		return fmt.Errorf("master %s: %w", master.Name, ErrTransactionPooledMaster)
	}
	return nil
}
