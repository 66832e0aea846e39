package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/goreplica/goreplica/config"
	"github.com/goreplica/goreplica/mailer"
)

func init() {
	verbs["mail-test"] = verb{"send a test alert mail and report the SMTP outcome in one line", runMailTest}
}

// runMailTest sends one test mail with the [mail] section and prints the
// outcome of the SMTP conversation in one line.
func runMailTest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("mail-test", stderr)
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("mail-test takes no arguments, got %q", fs.Arg(0))}
	}
	cfg, err := config.Load(config.Resolve(*c))
	if err != nil {
		return err
	}
	if cfg.Mail == nil {
		return errors.New("mail-test: the configuration has no [mail] section (sample.toml documents it)")
	}
	line, err := mailer.Test(ctx, mailOptions(cfg.Mail))
	if err != nil {
		return fmt.Errorf("mail-test: %w", err)
	}
	fmt.Fprintln(stdout, line)
	return nil
}
