package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/goreplica/goreplica/config"
	"github.com/goreplica/goreplica/replicator"
)

// Exit codes of compare and repair, for scripts.
const (
	compareEqual   = 0 // every table is equal on every slave (repair: nothing to repair, or repaired)
	compareDiffers = 1 // a table differs (repair: statements printed, not applied)
	compareFailed  = 3 // something could not be compared, and nothing was found to differ
)

// compareFlags are the flags compare and repair share.
type compareFlags struct {
	path        *string
	slave       string
	asJSON      bool
	chunk       int
	lockTimeout time.Duration
	catchUp     time.Duration
	quiet       bool
}

func (c *CLI) compareFlagSet(f *compareFlags) *flag.FlagSet {
	fs := c.flags()
	f.path = configFlag(fs)
	fs.StringVar(&f.slave, "slave", "", "only this slave (`NAME`)")
	fs.BoolVar(&f.asJSON, "json", false, "print JSON")
	fs.IntVar(&f.chunk, "chunk", 10000, "rows per checksummed key range")
	fs.DurationVar(&f.lockTimeout, "lock-timeout", 5*time.Second, "longest wait for the master's SHARE lock on a table (it waits for the transactions writing it)")
	fs.DurationVar(&f.catchUp, "catch-up-timeout", time.Minute, "longest wait for a slave to apply every logged change of a table")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress on stderr")
	return fs
}

// parseCompare parses compare's or repair's command line and loads the
// configuration.
func (c *CLI) parseCompare(f *compareFlags, extra func(*flag.FlagSet), args []string) (*config.Config, []string, error) {
	fs := c.compareFlagSet(f)
	if extra != nil {
		extra(fs)
	}
	// Flags may follow the table names.
	var pos []string
	for {
		if err := c.parse(fs, args, -1); err != nil {
			return nil, nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if f.chunk < 2 {
		return nil, nil, UsageError{Verb: c.verb.name, Msg: c.verb.name + ": --chunk must be at least 2"}
	}
	cfg, err := config.Load(config.Resolve(*f.path))
	if err != nil {
		return nil, nil, err
	}
	if f.slave != "" && !containsSlave(cfg, f.slave) {
		return nil, nil, UsageError{Verb: c.verb.name, Msg: fmt.Sprintf("%s: no slave %q in %s (slaves: %s)", c.verb.name, f.slave, cfg.Path, strings.Join(slaveNames(cfg), ", "))}
	}
	return cfg, pos, nil
}

func containsSlave(cfg *config.Config, name string) bool {
	for _, s := range cfg.Slaves {
		if s.Name == name {
			return true
		}
	}
	return false
}

func (f *compareFlags) options(tables []string, progress func(replicator.Progress)) replicator.CompareOptions {
	return replicator.CompareOptions{Tables: tables, Slave: f.slave, ChunkRows: f.chunk,
		LockTimeout: f.lockTimeout, CatchUpTimeout: f.catchUp, Progress: progress}
}

// progressPrinter writes a compare's progress on w at most once a second.
type progressPrinter struct {
	w    io.Writer
	mu   sync.Mutex
	last time.Time
}

func (p *progressPrinter) print(pr replicator.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.last) < time.Second {
		return
	}
	p.last = time.Now()
	rate := float64(pr.Rows) / max(pr.Elapsed.Seconds(), 1e-3)
	of := ""
	if pr.Estimate > 0 {
		of = fmt.Sprintf(" of about %d (%.0f%%)", pr.Estimate, min(100, 100*float64(pr.Rows)/float64(pr.Estimate)))
	}
	fmt.Fprintf(p.w, "compare: slave %s, table %s: %d rows%s, %.0f rows/s\n", pr.Slave, pr.Table, pr.Rows, of, rate)
}

// couldNot reports an error that stopped a compare or a repair as a whole:
// on stderr (and as JSON on stdout with --json), exit code 3.
func (c *CLI) couldNot(err error, asJSON bool) error {
	if errors.As(err, new(UsageError)) || errors.Is(err, errHelpShown) {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(c.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(struct {
			Error string `json:"error"`
		}{err.Error()})
	}
	fmt.Fprintf(c.Stderr, "goreplica: %s: %v\n", c.verb.name, err)
	return ExitStatus(compareFailed)
}

func (c *CLI) runCompare(ctx context.Context, args []string) error {
	var f compareFlags
	cfg, tables, err := c.parseCompare(&f, nil, args)
	if err != nil {
		return c.couldNot(err, f.asJSON)
	}
	var progress func(replicator.Progress)
	if !f.quiet {
		progress = (&progressPrinter{w: c.Stderr, last: time.Now()}).print
	}
	res, err := replicator.Compare(ctx, replicatorOptions(cfg), f.options(tables, progress))
	if err != nil {
		return c.couldNot(err, f.asJSON)
	}
	code := compareCode(res)
	if f.asJSON {
		enc := json.NewEncoder(c.Stdout)
		enc.SetIndent("", "  ")
		if res == nil {
			res = []replicator.TableComparison{}
		}
		if err := enc.Encode(struct {
			Equal  bool                         `json:"equal"`
			Tables []replicator.TableComparison `json:"tables"`
		}{code == compareEqual, res}); err != nil {
			return err
		}
		return ExitStatus(code)
	}
	tw := tabwriter.NewWriter(c.Stdout, 0, 0, 2, ' ', 0)
	for _, r := range res {
		switch {
		case r.Error != "":
			fmt.Fprintf(tw, "%s\t%s\tERROR\t%s\n", r.Slave, r.Table, r.Error)
		case r.Equal:
			fmt.Fprintf(tw, "%s\t%s\tok\t%d rows (lock %.0f ms, %.1f s)\n", r.Slave, r.Table, r.MasterRows, r.LockMs, r.Seconds)
		default:
			fmt.Fprintf(tw, "%s\t%s\tDIFFERS\tmaster %d rows, slave %d rows, %d key ranges differ, first %s: 'goreplica repair --slave %s %s' shows the rows\n",
				r.Slave, r.Table, r.MasterRows, r.SlaveRows, r.DiffRanges, r.FirstDiff, r.Slave, r.Table)
		}
	}
	tw.Flush()
	return ExitStatus(code)
}

// compareCode is compare's exit code: a difference found wins over a table
// that could not be compared.
func compareCode(res []replicator.TableComparison) int {
	code := compareEqual
	for _, r := range res {
		switch {
		case r.Error == "" && !r.Equal:
			return compareDiffers
		case r.Error != "":
			code = compareFailed
		}
	}
	return code
}

func (c *CLI) runRepair(ctx context.Context, args []string) error {
	var f compareFlags
	var apply bool
	cfg, tables, err := c.parseCompare(&f, func(fs *flag.FlagSet) {
		fs.BoolVar(&apply, "apply", false, "apply the statements on the slave, in one transaction (default: print them)")
	}, args)
	if err != nil {
		return c.couldNot(err, f.asJSON)
	}
	if f.slave == "" || len(tables) != 1 {
		return UsageError{Verb: "repair", Msg: "repair: name the slave (--slave NAME) and one table"}
	}
	ro := replicator.RepairOptions{Slave: f.slave, Table: tables[0], Apply: apply, CompareOptions: f.options(nil, nil)}
	if !f.quiet {
		ro.Progress = (&progressPrinter{w: c.Stderr, last: time.Now()}).print
	}
	var stmts []replicator.RepairStatement
	began := false
	emit := func(st replicator.RepairStatement) error {
		switch {
		case f.asJSON:
			stmts = append(stmts, st)
		case !apply:
			if !began {
				fmt.Fprintf(c.Stdout, "-- goreplica repair: slave %s, table %s, from master %s\nBEGIN;\n%s;\n", f.slave, tables[0], cfg.Master.Name,
					strings.Join(replicator.RepairSettings, ";\n"))
				began = true
			}
			fmt.Fprintf(c.Stdout, "%s;\n", st.SQL)
		}
		return nil
	}
	rep, err := replicator.Repair(ctx, replicatorOptions(cfg), ro, emit)
	if err != nil {
		return c.couldNot(err, f.asJSON)
	}
	total := rep.Missing + rep.Different + rep.Extra
	code := compareEqual
	if total > 0 && !apply {
		code = compareDiffers
	}
	if f.asJSON {
		if stmts == nil {
			stmts = []replicator.RepairStatement{}
		}
		type stmt struct {
			Kind string `json:"kind"`
			SQL  string `json:"sql"`
		}
		out := struct {
			*replicator.RepairReport
			Statements []stmt `json:"statements"`
		}{RepairReport: rep, Statements: []stmt{}}
		for _, s := range stmts {
			out.Statements = append(out.Statements, stmt{s.Kind, s.SQL})
		}
		enc := json.NewEncoder(c.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
		return ExitStatus(code)
	}
	what := fmt.Sprintf("%d missing on the slave, %d different, %d extra", rep.Missing, rep.Different, rep.Extra)
	switch {
	case total == 0:
		fmt.Fprintf(c.Stdout, "slave %s, table %s: equal to master %s, nothing to repair\n", rep.Slave, rep.Table, cfg.Master.Name)
	case apply:
		fmt.Fprintf(c.Stdout, "slave %s, table %s: repaired (%s)\n", rep.Slave, rep.Table, what)
	default:
		fmt.Fprintf(c.Stdout, "COMMIT;\n-- %s; 'goreplica repair --apply' applies them\n", what)
	}
	return ExitStatus(code)
}
