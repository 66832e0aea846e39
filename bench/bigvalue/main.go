// Command bigvalue measures the daemon's peak memory when it applies one
// big value: for each case, one row holding the value is written on the
// master (while no daemon runs), then `goreplica run` is started and stopped
// once the slave holds the row, and its peak resident memory (VmHWM) is
// read from /proc. Cases: `text` (a text of MB megabytes), `mixed` (a
// bytea of MB/4 and a text of MB/2 in one row, each rendered by its type's
// output: the bytea as hex, twice its size), and `update` (the text case's
// row updated to another text of MB megabytes: an UPDATE statement).
//
// Target (DESIGN.md invariant 13, issue 8): peak RSS below 3x the largest
// logged statement plus a constant; the constant is shown by a `small`
// case (a row of 1 kB).
//
// Knobs (environment): MB [100], CASES [small,text,mixed,update].
package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/goreplica/goreplica/bench/internal/rig"
)

type result struct {
	name      string
	stmtBytes int64 // the logged statement's length
	rssKB     int64
	secs      float64
}

func main() { rig.Main("bench/bigvalue", run) }

func run(ctx context.Context) error {
	var k rig.Knobs
	mb := k.Int("MB", 100)
	cases := strings.Split(k.String("CASES", "small,text,mixed,update"), ",")
	command := k.Command("./bench/bigvalue")

	srv, err := rig.StartServers(ctx, "goreplica-bigvalue-", nil, map[string]string{"max_prepared_transactions": "10"}, "slave")
	if err != nil {
		return err
	}
	defer srv.Close()
	dir, bin, master, slave := srv.Dir, srv.Bin, srv.Master, srv.Slave
	m, err := rig.Open(master, rig.MasterDB)
	if err != nil {
		return err
	}
	defer m.Close()
	s, err := rig.Open(slave, "slave")
	if err != nil {
		return err
	}
	defer s.Close()
	const schema = `CREATE TABLE test (id int PRIMARY KEY, t text, b bytea)`
	if err := rig.Exec(ctx, m, schema); err != nil {
		return err
	}
	if err := rig.Exec(ctx, s, schema); err != nil {
		return err
	}
	cfg := filepath.Join(dir, "goreplica.toml")
	if err := (rig.Config{MasterDSN: master.DSN(rig.MasterDB), Slave: "slave", SlaveDSN: slave.DSN("slave"), TwoPhase: true}).Write(cfg); err != nil {
		return err
	}
	if err := rig.Init(ctx, bin, cfg); err != nil {
		return err
	}
	size := mb << 20
	writes := map[string]string{
		"small":  `INSERT INTO test VALUES (1, repeat('s', 1000), NULL)`,
		"text":   fmt.Sprintf(`INSERT INTO test VALUES (2, repeat(E'quote '' backslash \\ ', %d), NULL)`, size/21),
		"mixed":  fmt.Sprintf(`INSERT INTO test VALUES (3, repeat('m', %d), decode(repeat('00ff27', %d), 'hex'))`, size/2, size/4/3),
		"update": fmt.Sprintf(`UPDATE test SET t = repeat('u', %d) WHERE id = 2`, size),
	}
	var results []result
	for _, c := range cases {
		q, ok := writes[c]
		if !ok {
			return fmt.Errorf("CASES: no case %q (small, text, mixed, update)", c)
		}
		rig.Logf("%s: writing the row on the master", c)
		if err := rig.Exec(ctx, m, q); err != nil {
			return err
		}
		r := result{name: c}
		if err := m.QueryRowContext(ctx, `SELECT max(octet_length(sql)) FROM replica.replica_log`).Scan(&r.stmtBytes); err != nil {
			return err
		}
		if err := apply(ctx, bin, cfg, dir, m, s, &r); err != nil {
			return err
		}
		rig.Logf("%s: statement %d MB, peak RSS %d MB, %.1fs", c, r.stmtBytes>>20, r.rssKB>>10, r.secs)
		results = append(results, r)
		if err := rig.Exec(ctx, m,
			`DELETE FROM replica.replica_log WHERE txid < (SELECT min(pg_snapshot_xmin(acked_snapshot)) FROM replica.slaves)`,
			`VACUUM replica.replica_log`); err != nil {
			return err
		}
	}
	fmt.Println()
	fmt.Printf("# %s\n", command)
	fmt.Println("# target: peak RSS < 3x the largest logged statement + a constant (the small case)")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "case\tstatement MB\tpeak RSS MB\tRSS / statement\tapply s\t")
	for _, r := range results {
		ratio := "-"
		if r.stmtBytes > 1<<20 {
			ratio = fmt.Sprintf("%.2fx", float64(r.rssKB<<10)/float64(r.stmtBytes))
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.0f\t%s\t%.1f\t\n", r.name, float64(r.stmtBytes)/(1<<20), float64(r.rssKB)/1024, ratio, r.secs)
	}
	return tw.Flush()
}

// apply runs the daemon until the slave has applied everything the master
// logged, and records its peak RSS.
func apply(ctx context.Context, bin, cfg, dir string, m, s *sql.DB, r *result) error {
	var want string
	if err := m.QueryRowContext(ctx, `SELECT md5(string_agg(md5(t) || coalesce(md5(b), ''), ',' ORDER BY id)) FROM test`).Scan(&want); err != nil {
		return err
	}
	t0 := time.Now()
	dm, err := rig.StartDaemon(bin, cfg, filepath.Join(dir, r.name+".log"))
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	err = rig.WaitContext(wctx, 100*time.Millisecond, func() (bool, error) {
		var got sql.NullString
		err := s.QueryRowContext(wctx, `SELECT md5(string_agg(md5(t) || coalesce(md5(b), ''), ',' ORDER BY id)) FROM test`).Scan(&got)
		return got.String == want, err
	})
	r.secs = time.Since(t0).Seconds()
	u, uerr := dm.Usage()
	serr := dm.Stop()
	if err != nil {
		return fmt.Errorf("%s: %w\ndaemon log:\n%s", r.name, err, dm.Tail(3000))
	}
	if uerr != nil {
		return uerr
	}
	r.rssKB = u.PeakRSSKB
	return serr
}
