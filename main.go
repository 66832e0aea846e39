// Command goreplica is a trigger-based, NOTIFY-driven replicator for
// PostgreSQL. main only parses the verb and its flags, loads the
// configuration and wires the packages together.
package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/goreplica/goreplica/buildinfo"
)

// triggerSQL holds every SQL object goreplica installs (schema replica).
//
//go:embed trigger.sql
var triggerSQL string

// version is the release version (see package buildinfo), for the logs.
var version = buildinfo.Get().Version

// usageError is returned for a bad command line; main prints the usage hint.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

type verb struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// verbs lists the command's verbs. Files that add a verb register it in
// their own init function.
var verbs = map[string]verb{
	"version": {"print the version", runVersion},
	"trigger": {"print the SQL goreplica installs (schema replica)", runTrigger},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var es exitStatus
		if errors.As(err, &es) {
			os.Exit(int(es))
		}
		fmt.Fprintln(os.Stderr, "goreplica: "+err.Error())
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintln(os.Stderr, "run 'goreplica help' for the list of verbs")
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		printHelp(stdout)
		return nil
	}
	v, ok := verbs[args[0]]
	if !ok {
		return usageError{fmt.Sprintf("unknown verb %q", args[0])}
	}
	return v.run(ctx, args[1:], stdout, stderr)
}

func printHelp(w io.Writer) {
	fmt.Fprintln(w, "goreplica: trigger-based, NOTIFY-driven replication for PostgreSQL")
	fmt.Fprintln(w, "\nusage: goreplica <verb> [-c FILE] [flags] [args]")
	fmt.Fprintln(w, "\nverbs:")
	names := make([]string, 0, len(verbs))
	for n := range verbs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, verbs[n].summary)
	}
	fmt.Fprintln(w, "\nWithout -c the configuration is $GOREPLICA_CONFIG, then "+defaultConfigHint()+".")
}

func runVersion(_ context.Context, _ []string, stdout, _ io.Writer) error {
	fmt.Fprintln(stdout, buildinfo.Get())
	return nil
}

func runTrigger(_ context.Context, _ []string, stdout, _ io.Writer) error {
	_, err := io.WriteString(stdout, triggerSQL)
	return err
}
