package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/meshnode/meshnode/e2e/netlab"
)

// renderMatrix renders the rows as a Markdown table, readable as plain text.
func renderMatrix(rows []matrixRow) string {
	var b strings.Builder
	b.WriteString("| node A | node B | expected | got | time to path | first packet | ping | TCP 4 MiB | result | note |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		ttp, first := "-", "-"
		if r.TimeToPath > 0 {
			ttp = fmt.Sprintf("%.1f s", r.TimeToPath.Seconds())
		}
		if r.FirstPacket > 0 {
			first = fmt.Sprintf("%.2f s", r.FirstPacket.Seconds())
		}
		result := "pass"
		if !r.Pass {
			result = "FAIL"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.A, r.B, r.expected(), r.Got, ttp, first, r.Ping, r.TCP, result, r.Note)
	}
	return b.String()
}

// matrixDocument is bench/NATMATRIX.md: the table with how it was made.
func matrixDocument(table, version, kernel string) string {
	var b strings.Builder
	b.WriteString("# NAT traversal matrix\n\n")
	b.WriteString("Every pair of NAT kinds in the real-kernel lab (`e2e/netlab`): one coordinator and two\n")
	b.WriteString("`meshnode up` nodes with real TUN devices in Linux network namespaces, NAT routers built\n")
	b.WriteString("with nftables, the internet a bridge on 198.18.0.0/15.\n\n")
	fmt.Fprintf(&b, "Command: `make natmatrix` · %s · %s · Linux %s\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), version, kernel)
	b.WriteString(table)
	b.WriteString("\n- **expected**: direct for any two endpoint-independent mappings (routers that remap when\n")
	b.WriteString("  punched early included: the punch is ordered) and for symmetric against no NAT or a full\n")
	b.WriteString("  cone; relay for symmetric against a filtering cone or symmetric, and for UDP blocked (TCP\n")
	b.WriteString("  relay). A relay-expected pair that reaches direct passes and says so.\n")
	b.WriteString("- **got**: the path both nodes report, over UDP or TCP (a punched TCP path or the TCP relay).\n")
	b.WriteString("- **time to path**: from the second node's start to both nodes reporting the path.\n")
	b.WriteString("- **first packet**: from the second node's start to the first reply to UDP probes (one every\n")
	b.WriteString("  50 ms) that node A sends it across the overlay from the moment it lists node B as a peer, before\n")
	b.WriteString("  B has any path: traffic already waiting when B comes up.\n")
	b.WriteString("- **ping**: `ping -c 3` across the overlay; **TCP**: 4 MiB checked by SHA-256.\n\n")
	b.WriteString("Kinds:\n\n")
	for _, k := range netlab.Kinds() {
		fmt.Fprintf(&b, "- `%s`: %s\n", k, k.Describe())
	}
	return b.String()
}

// binaryVersion is the first line of `meshnode version` ("meshnode VERSION ...").
func binaryVersion(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "(unknown version)"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// kernelRelease is the running kernel's release.
func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "(unknown kernel)"
	}
	return strings.TrimSpace(string(b))
}
