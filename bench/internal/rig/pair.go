package rig

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/goreplica/goreplica/pgserver"
	"github.com/lib/pq"
)

// MasterDB is the master's database in a Pair.
const MasterDB = "bench"

// TestTable is table test of the anchor benchmarks, on the master.
const TestTable = `CREATE TABLE test (id serial PRIMARY KEY, t text, n float8, f timestamptz, b bool)`

// Slave describes one slave database of a Pair fed by goreplica.
type Slave struct {
	Name     string // goreplica slave name, also the database name
	TwoPhase bool
	Config   string // path of its goreplica configuration, set by StartPair
}

// PairOptions configure StartPair.
type PairOptions struct {
	// SlaveColumns are appended to the slave's copy of table test, such as
	// ", applied_at timestamptz DEFAULT clock_timestamp()".
	SlaveColumns string
	// MasterSettings and SlaveSettings are added to BaseSettings.
	MasterSettings, SlaveSettings map[string]string
	Slaves                        []Slave // fed by goreplica
	Native                        string  // database fed by a native subscription; "" for none
	Poll                          time.Duration
	// MasterDSNOptions are appended to the master DSN of the goreplica
	// configurations (not of the benchmark's own connections), such as
	// "synchronous_commit=off": lib/pq sends unknown keys as settings.
	MasterDSNOptions string
	// BatchInterval is the configurations' batch_interval ("": the default).
	BatchInterval string
}

// Pair is a master server and a slave server on this machine: table test on
// the master, goreplica initialised for each of Slaves, and a native
// publication/subscription (disabled) for Native.
type Pair struct {
	Master, Slave *pgserver.Server
	M             *sql.DB // the master's database
	S             map[string]*sql.DB
	Slaves        []Slave
	Native        string
	Bin           string // the goreplica binary
	Dir           string // configurations, daemon logs, pgbench scripts
	closers       []func() error
}

// StartPair starts both servers and sets replication up.
func StartPair(ctx context.Context, o PairOptions) (_ *Pair, err error) {
	p := &Pair{S: map[string]*sql.DB{}, Slaves: o.Slaves, Native: o.Native}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.Close())
		}
	}()
	p.Dir, err = os.MkdirTemp("", "goreplica-bench-")
	if err != nil {
		return nil, err
	}
	p.closers = append(p.closers, func() error { return os.RemoveAll(p.Dir) })
	Logf("building goreplica")
	if p.Bin, err = Build(ctx, p.Dir); err != nil {
		return nil, err
	}
	ms := map[string]string{"wal_level": "logical", "max_wal_senders": "10", "max_replication_slots": "10"}
	for k, v := range o.MasterSettings {
		ms[k] = v
	}
	// wal_retrieve_retry_interval: the logical replication launcher starts
	// a re-enabled subscription's worker at once instead of up to 5s later.
	ss := map[string]string{"max_prepared_transactions": "10", "wal_retrieve_retry_interval": "100ms"}
	for k, v := range o.SlaveSettings {
		ss[k] = v
	}
	Logf("starting master and slave servers (durable)")
	if p.Master, err = Start(ctx, MasterDB, ms); err != nil {
		return nil, err
	}
	p.closers = append(p.closers, p.Master.Close)
	if p.Slave, err = Start(ctx, "", ss); err != nil {
		return nil, err
	}
	p.closers = append(p.closers, p.Slave.Close)
	if p.M, err = Open(p.Master, MasterDB); err != nil {
		return nil, err
	}
	p.closers = append(p.closers, p.M.Close)
	if err := Exec(ctx, p.M, TestTable); err != nil {
		return nil, err
	}
	names := []string{}
	for _, s := range o.Slaves {
		names = append(names, s.Name)
	}
	if o.Native != "" {
		names = append(names, o.Native)
	}
	for _, n := range names {
		if err := p.Slave.CreateDatabase(ctx, n); err != nil {
			return nil, err
		}
		db, err := Open(p.Slave, n)
		if err != nil {
			return nil, err
		}
		p.S[n] = db
		p.closers = append(p.closers, db.Close)
		if err := Exec(ctx, db, `CREATE TABLE test (id int PRIMARY KEY, t text, n float8, f timestamptz, b bool`+o.SlaveColumns+`)`); err != nil {
			return nil, err
		}
	}
	for i := range p.Slaves {
		s := &p.Slaves[i]
		s.Config = filepath.Join(p.Dir, s.Name+".toml")
		mdsn := p.Master.DSN(MasterDB)
		if o.MasterDSNOptions != "" {
			mdsn += " " + o.MasterDSNOptions
		}
		c := Config{MasterDSN: mdsn, Slave: s.Name, SlaveDSN: p.Slave.DSN(s.Name), TwoPhase: s.TwoPhase, Poll: o.Poll, BatchInterval: o.BatchInterval}
		if err := c.Write(s.Config); err != nil {
			return nil, err
		}
		if err := Init(ctx, p.Bin, s.Config); err != nil {
			return nil, err
		}
	}
	if o.Native != "" {
		if err := Exec(ctx, p.M, `CREATE PUBLICATION bench_pub FOR TABLE test`); err != nil {
			return nil, err
		}
		// The subscription must go before its database and server.
		p.closers = append(p.closers, func() error {
			c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			db := p.S[o.Native]
			_, _ = db.ExecContext(c, `ALTER SUBSCRIPTION bench_sub DISABLE`)
			_, _ = db.ExecContext(c, `ALTER SUBSCRIPTION bench_sub SET (slot_name = NONE)`)
			_, err := db.ExecContext(c, `DROP SUBSCRIPTION bench_sub`)
			return err
		})
		create := fmt.Sprintf(`CREATE SUBSCRIPTION bench_sub CONNECTION %s PUBLICATION bench_pub WITH (copy_data = false, enabled = false)`,
			pq.QuoteLiteral(p.Master.DSN(MasterDB)))
		if err := Exec(ctx, p.S[o.Native], create); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Close stops everything StartPair started, in reverse order.
func (p *Pair) Close() error {
	var errs []error
	for i := len(p.closers) - 1; i >= 0; i-- {
		if err := p.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	p.closers = nil
	return errors.Join(errs...)
}

// SetNative enables or disables the native subscription and, when
// disabling, waits until its apply worker has exited.
func (p *Pair) SetNative(ctx context.Context, on bool) error {
	db := p.S[p.Native]
	if on {
		return Exec(ctx, db, `ALTER SUBSCRIPTION bench_sub ENABLE`)
	}
	if err := Exec(ctx, db, `ALTER SUBSCRIPTION bench_sub DISABLE`); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return WaitContext(wctx, 50*time.Millisecond, func() (bool, error) {
		var n int
		err := db.QueryRowContext(ctx, `SELECT count(pid) FROM pg_stat_subscription WHERE subname = 'bench_sub'`).Scan(&n)
		return n == 0, err
	})
}

// MaxID returns max(id) of table test in db (0 when empty).
func MaxID(ctx context.Context, db *sql.DB) (int64, error) {
	var n int64
	err := db.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM test`).Scan(&n)
	return n, err
}

// WaitRows waits until db's table test holds want rows with id > after, and
// returns when it saw them. It polls max(id) (cheap) every interval until
// it reaches maxID, then counts.
func WaitRows(ctx context.Context, db *sql.DB, after, maxID, want int64, interval time.Duration) (time.Time, error) {
	var last, seen int64
	err := WaitContext(ctx, interval, func() (bool, error) {
		var err error
		if last < maxID {
			if last, err = MaxID(ctx, db); err != nil || last < maxID {
				return false, err
			}
		}
		err = db.QueryRowContext(ctx, `SELECT count(*) FROM test WHERE id > $1`, after).Scan(&seen)
		return seen >= want, err
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("wait for %d rows after id %d (max id seen %d, rows seen %d): %w", want, after, last, seen, err)
	}
	return time.Now(), nil
}
