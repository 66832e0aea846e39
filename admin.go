package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/goreplica/goreplica/config"
	"github.com/goreplica/goreplica/replicator"
)

func init() {
	verbs["init"] = verb{"check servers and tables, install capture on the master and the slaves", runInit}
	verbs["status"] = verb{"show each slave's state, lag, pending events and errors (--json)", runStatus}
	verbs["uninstall"] = verb{"remove every trigger and the replica schema from master and slaves (--yes)", runUninstall}
}

func loadFor(name string, args []string, stderr io.Writer, extra func(*flagSet)) (*config.Config, error) {
	fs, c := newFlags(name, stderr)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Sprintf("%s: unexpected argument %q", name, fs.Arg(0))}
	}
	return config.Load(config.Resolve(*c))
}

func runInit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := loadFor("init", args, stderr, nil)
	if err != nil {
		return err
	}
	if problems := replicator.CheckPooling(ctx, replicatorOptions(cfg)); len(problems) > 0 {
		return fmt.Errorf("init:\n  %w", indent(errors.Join(problems...)))
	}
	rep, err := replicator.Init(ctx, replicatorOptions(cfg), triggerSQL)
	if err != nil {
		return fmt.Errorf("init:\n  %w", indent(err))
	}
	for _, w := range rep.Warnings {
		fmt.Fprintln(stdout, "warning: "+w)
	}
	fmt.Fprintf(stdout, "master %s: capturing %d tables: %s\n", cfg.Master.Name, len(rep.Tables), strings.Join(rep.Tables, ", "))
	for _, t := range rep.Removed {
		fmt.Fprintf(stdout, "master %s: table %s no longer matched: capture removed\n", cfg.Master.Name, t)
	}
	fmt.Fprintf(stdout, "slaves registered: %s\n", strings.Join(rep.Slaves, ", "))
	fmt.Fprintln(stdout, "ready: start the daemon with 'goreplica run'")
	return nil
}

// indent puts each joined error on its own indented line.
func indent(err error) error {
	return errors.New(strings.ReplaceAll(err.Error(), "\n", "\n  "))
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var asJSON bool
	cfg, err := loadFor("status", args, stderr, func(fs *flagSet) {
		fs.BoolVar(&asJSON, "json", false, "print JSON")
	})
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := replicator.GetStatus(cctx, replicatorOptions(cfg))
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(stdout, st)
	return nil
}

func printStatus(w io.Writer, st *replicator.Status) {
	for _, p := range st.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", p)
	}
	if !st.Reachable {
		what := "UNREACHABLE"
		if st.ConfigError {
			what = "CANNOT CONNECT, CHECK ITS DSN"
		}
		fmt.Fprintf(w, "master %s: %s: %s\n", st.Master, what, st.Error)
	} else {
		fmt.Fprintf(w, "master %s: %d tables captured, %d events in the log\n", st.Master, st.TablesCount, st.LogRows)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SLAVE\tSTATE\tLAG\tPENDING\tBATCH\tIN-DOUBT\tLAST ERROR")
	for _, s := range st.Slaves {
		lastErr := s.LastError
		if lastErr == "" {
			lastErr = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1fs\t%d\t%d\t%d\t%s\n", s.Name, s.State, s.LagSeconds, s.PendingEvents, s.AppliedBatch, len(s.InDoubt), lastErr)
	}
	tw.Flush()
	for _, s := range st.Slaves {
		for _, g := range s.InDoubt {
			fmt.Fprintf(w, "slave %s: prepared transaction %s is in doubt ('goreplica run' commits it)\n", s.Name, g)
		}
	}
}

func runUninstall(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var yes bool
	cfg, err := loadFor("uninstall", args, stderr, func(fs *flagSet) {
		fs.BoolVar(&yes, "yes", false, "confirm: remove goreplica's triggers and schema replica (with its log) from master and slaves")
	})
	if err != nil {
		return err
	}
	if !yes {
		return usageError{"uninstall removes every goreplica trigger and the replica schema, with the change log, from the master and all slaves: run again with --yes to confirm"}
	}
	if err := replicator.Uninstall(ctx, replicatorOptions(cfg)); err != nil {
		return fmt.Errorf("uninstall:\n  %w", indent(err))
	}
	fmt.Fprintf(stdout, "goreplica removed from master %s and slaves %s\n", cfg.Master.Name, strings.Join(slaveNames(cfg), ", "))
	return nil
}
