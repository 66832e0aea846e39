package main

import (
	"flag"
	"io"

	"github.com/goreplica/goreplica/config"
)

// newFlags returns a flag set for a verb with the -c option every verb shares.
func newFlags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("goreplica "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := fs.String("c", "", "configuration file (default $GOREPLICA_CONFIG, then "+config.DefaultPath()+")")
	return fs, c
}

func defaultConfigHint() string { return config.DefaultPath() }

type flagSet = flag.FlagSet
