package replicator

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
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

// poolWait is how long the pooling check waits for a pooler to give its
// second client a server connection.
const poolWait = 3 * time.Second

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

// transactionPooled reports whether db goes through a pooler that hands a
// client's successive transactions to different server sessions
// (pgbouncer's transaction or statement pooling). It reads the server
// process id from one client connection a few times, then, while that
// connection is still open, from a second one. A session (or no pooler)
// gives them two server processes and never changes the first one's; a
// transaction pool lends the first one's server, idle between its
// transactions, to the second (pgbouncer reuses the most recently used
// server connection first), or hands out its idle servers in turn
// (server_round_robin), which shows in the first client's successive
// transactions. A second client kept waiting (a full session pool) means a
// session pool: a transaction pool would have lent it the idle server.
func transactionPooled(ctx context.Context, db *sql.DB) (bool, error) {
	a, err := db.Conn(ctx)
	if err != nil {
		return false, err
	}
	defer a.Close()
	b, err := db.Conn(ctx)
	if err != nil {
		return false, err
	}
	// b's query may be cancelled: never hand its connection back.
	defer func() { _ = b.Raw(func(any) error { return driver.ErrBadConn }); b.Close() }()
	var pa, pb int
	for i := range 3 {
		var p int
		if err := a.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&p); err != nil {
			return false, err
		}
		if i > 0 && p != pa {
			return true, nil
		}
		pa = p
	}
	bctx, cancel := context.WithTimeout(ctx, poolWait)
	defer cancel()
	if err := b.QueryRowContext(bctx, `SELECT pg_backend_pid()`).Scan(&pb); err != nil {
		if bctx.Err() != nil && ctx.Err() == nil {
			return false, nil
		}
		return false, err
	}
	return pa == pb, nil
}

// ErrTransactionPooledMaster is returned when the master's DSN goes through
// a transaction (or statement) pool: LISTEN needs a session of its own, and
// the daemon's master sessions carry settings.
var ErrTransactionPooledMaster = errors.New("the master DSN goes through a pooler in transaction (or statement) pooling mode: LISTEN needs a session; point it at PostgreSQL directly or at a pgbouncer pool with pool_mode = session (slaves may use transaction pooling)")

// statementPooled reports whether db goes through a statement pool, which
// refuses a transaction block: pgbouncer lets BEGIN through, then closes
// the client connection when the server reports a transaction in progress
// (it tells its log why, not the client). So a connection that breaks
// inside a transaction block while a fresh one works is taken for a
// statement pool.
func statementPooled(ctx context.Context, db *sql.DB) (bool, error) {
	c, err := db.Conn(ctx)
	if err != nil {
		return false, err
	}
	defer c.Close()
	_, err = c.ExecContext(ctx, "BEGIN")
	if err == nil {
		_, err = c.ExecContext(ctx, "SELECT 1")
	}
	if err == nil {
		_, err = c.ExecContext(ctx, "ROLLBACK")
	}
	if err == nil {
		return false, nil
	}
	_ = c.Raw(func(any) error { return driver.ErrBadConn })
	if isStatementPooling(err) {
		return true, nil
	}
	if !isConnectionError(err) {
		return false, err
	}
	if _, err2 := db.ExecContext(ctx, "SELECT 1"); err2 != nil {
		return false, err
	}
	return true, nil
}

// CheckPooling returns a problem for each node whose DSN goes through a
// pooler mode goreplica cannot work with: a transaction or statement pool
// in front of the master (LISTEN and the daemon's session settings need a
// session), a statement pool in front of a slave (a batch is one
// transaction). Session and transaction pools in front of a slave are fine.
// A node that cannot be reached is left out: reaching it is the caller's
// business.
//
// The nodes are checked at once, each on connections of its own (a check
// is a few connections and round trips: at start-up they add up).
func CheckPooling(ctx context.Context, opts Options) []error {
	check := func(n Node, master bool) error {
		db, err := openDB(n.DSN)
		if err != nil {
			return nil
		}
		defer db.Close()
		what := "slave " + n.Name
		if master {
			what = "master " + n.Name
		}
		stmt, err := statementPooled(ctx, db)
		if err != nil {
			return nil
		}
		if stmt {
			if master {
				return fmt.Errorf("%s: %w", what, ErrTransactionPooledMaster)
			}
			return fmt.Errorf("%s: %w: use pool_mode = session or transaction for it", what, ErrStatementPooling)
		}
		if master {
			if pooled, err := transactionPooled(ctx, db); err == nil && pooled {
				return fmt.Errorf("%s: %w", what, ErrTransactionPooledMaster)
			}
		}
		return nil
	}
	found := make([]error, 1+len(opts.Slaves))
	var wg sync.WaitGroup
	for i := range found {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 0 {
				found[i] = check(opts.Master, true)
			} else {
				found[i] = check(opts.Slaves[i-1], false)
			}
		}()
	}
	wg.Wait()
	var problems []error
	for _, err := range found {
		if err != nil {
			problems = append(problems, err)
		}
	}
	return problems
}

// notifyWait is how long status waits for its test notification.
const notifyWait = 2 * time.Second

// ErrNoNotification is returned when a notification sent to the master does
// not come back to a session that LISTENs there.
var ErrNoNotification = errors.New("a test notification did not come back through the master DSN: LISTEN does not work there (a pooler in transaction or statement mode, pgbouncer pool_mode = transaction?): point it at PostgreSQL directly or at a pool with pool_mode = session; until then replication only polls, every poll_interval")

// checkNotify LISTENs on a channel of its own through the master's DSN,
// NOTIFYs it from another session, and reports ErrNoNotification when the
// notification does not arrive within notifyWait.
func checkNotify(ctx context.Context, master string) error {
	ch := make(chan *pq.Notification, 4)
	lc, err := pq.NewListenerConn(master, ch)
	if err != nil {
		return err
	}
	defer lc.Close()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	channel := "goreplica_check_" + hex.EncodeToString(b)
	if _, err := lc.Listen(channel); err != nil {
		return err
	}
	db, err := openDB(master)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `SELECT pg_notify($1, '')`, channel); err != nil {
		return err
	}
	t := time.NewTimer(notifyWait)
	defer t.Stop()
	for {
		select {
		case n := <-ch:
			if n != nil && n.Channel == channel {
				return nil
			}
		case <-t.C:
			return ErrNoNotification
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
