package cli

import (
	"testing"

	"github.com/goreplica/goreplica/replicator"
)

func TestCompareCode(t *testing.T) {
	ok := replicator.TableComparison{Equal: true}
	differs := replicator.TableComparison{}
	failed := replicator.TableComparison{Error: "no daemon"}
	tests := []struct {
		name string
		res  []replicator.TableComparison
		want int
	}{
		{"all equal", []replicator.TableComparison{ok, ok}, compareEqual},
		{"one differs", []replicator.TableComparison{ok, differs}, compareDiffers},
		{"one could not be compared", []replicator.TableComparison{ok, failed}, compareFailed},
		{"a difference wins over an error", []replicator.TableComparison{failed, differs, ok}, compareDiffers},
		{"nothing compared", nil, compareEqual},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := compareCode(tt.res); got != tt.want {
				t.Errorf("compareCode = %d, want %d", got, tt.want)
			}
		})
	}
}
