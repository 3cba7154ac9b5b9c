package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/policy"
)

// Admin is what the administration commands use. A running coordinator
// provides it through its admin socket, so that its hub pushes changes to
// the nodes at once; with none running, it works on the data directory.
// *Server implements it too.
type Admin interface {
	CreateToken(ctx context.Context, opts TokenOptions) (crypto.Token, error)
	Tokens(ctx context.Context) ([]TokenInfo, error)
	RevokeToken(ctx context.Context, id string) error
	Nodes(ctx context.Context) ([]wire.Node, error)
	// RemoveNode takes the named node out of the mesh and every peer map,
	// and bans its key.
	RemoveNode(ctx context.Context, name string) (wire.Node, error)
	// TagNode adds, then removes, tags of the named node; peers see the
	// change at once (RelayTag makes it a relay).
	TagNode(ctx context.Context, name string, add, remove []string) (wire.Node, error)
	// RenameNode gives the named node a new name (a DNS label): peers
	// answer the new name in the mesh's DNS at once, the old one no more.
	RenameNode(ctx context.Context, name, newName string) (wire.Node, error)
	// Bans lists the keys of removed nodes, newest first.
	Bans(ctx context.Context) ([]Ban, error)
	// AllowNode lifts the ban of a removed node's key, given as the key or
	// the name the node had: it may register again with a join token.
	AllowNode(ctx context.Context, keyOrName string) (Ban, error)
	// Routes lists every node's advertised and approved routes.
	Routes(ctx context.Context) ([]RouteInfo, error)
	// ApproveRoutes approves routes the named node advertises, and
	// RejectRoutes withdraws approvals; both return the node's routes.
	// Peers see the change at once.
	ApproveRoutes(ctx context.Context, name string, prefixes []netip.Prefix) ([]RouteInfo, error)
	RejectRoutes(ctx context.Context, name string, prefixes []netip.Prefix) ([]RouteInfo, error)
	// SetPolicy checks and stores a new version of the access policy
	// ("" removes it: everyone reaches everyone); a running coordinator
	// applies it to every node at once. A policy that is not valid is
	// refused with ErrInvalidPolicy.
	SetPolicy(ctx context.Context, text string) (PolicyInfo, error)
	// Policy returns a stored version of the access policy, the newest
	// for 0; ErrNotFound when there is none.
	Policy(ctx context.Context, version uint64) (PolicyInfo, error)
	Close() error
}

// ErrAmbiguous is returned when a name matches several removed nodes.
var ErrAmbiguous = store.ErrAmbiguous

// ErrNameTaken is returned for a rename to the name of another node.
var ErrNameTaken = store.ErrNameTaken

// Ban is a removed node's key, kept out until allowed.
type Ban struct {
	PublicKey crypto.PublicKey `json:"public_key"`
	Name      string           `json:"name"` // when removed; "" for removals before bans were recorded
	Since     time.Time        `json:"since"`
}

func toBan(b store.Ban) Ban { return Ban{PublicKey: b.Key, Name: b.Name, Since: b.Since} }

func bans(ctx context.Context, st store.Store) ([]Ban, error) {
	list, err := st.Bans(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Ban, 0, len(list))
	for _, b := range list {
		out = append(out, toBan(b))
	}
	return out, nil
}

var _ Admin = (*Server)(nil)

// Nodes lists every registered node, by name.
func (s *Server) Nodes(context.Context) ([]wire.Node, error) { return s.hub.list(), nil }

// removedText is what a removed node is told, on its stream and when it
// tries to register again.
func removedText(key crypto.PublicKey) string {
	return fmt.Sprintf("this node (key %s) was removed from the mesh by its administrator; it may join again only after the administrator runs 'meshnode nodes allow %s'",
		key.Short(), key)
}

// RemoveNode removes a node: its stream is told node_removed and closed,
// every peer drops it from its map, and its key is banned.
func (s *Server) RemoveNode(ctx context.Context, name string) (wire.Node, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	n, err := s.store.RemoveNode(ctx, name, time.Now())
	if err != nil {
		return wire.Node{}, err
	}
	s.dropNode(n.Key)
	s.log.Info("node removed and its key banned", "node", n.Name, "key", n.Key.Short())
	return toWire(n, false), nil
}

// dropNode takes a removed node out of the hub, every peer map and the
// relay, and ends its stream, telling it node_removed. Caller holds
// writeMu, after the removal is stored.
func (s *Server) dropNode(key crypto.PublicKey) {
	if sess := s.hub.remove(key, s.accessAfter(key, nil)); sess != nil {
		sess.stop(closeRemoved, "node removed", &wire.StreamMsg{
			Type:  wire.MsgError,
			Code:  wire.ErrCodeNodeRemoved,
			Error: removedText(key),
		})
	}
	s.relay.Forget(key)
	s.evidence.forget(key)
	s.seenMu.Lock()
	delete(s.seenWritten, key)
	s.seenMu.Unlock()
}

// TagNode changes a node's tags and pushes the node to its peers.
func (s *Server) TagNode(ctx context.Context, name string, add, remove []string) (wire.Node, error) {
	if err := ValidateTags(append(slices.Clone(add), remove...)); err != nil {
		return wire.Node{}, err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	n, err := s.store.UpdateTags(ctx, name, add, remove)
	if err != nil {
		return wire.Node{}, err
	}
	if approved, err := autoApproveTagged(ctx, s.store, s.approver(), s.hub.tags(n.Key), n); err != nil {
		s.log.Warn("auto-approving routes of a newly tagged node", "node", n.Name, "err", err)
	} else {
		n = approved
	}
	w := s.hub.setTags(n, s.withNode(&n))
	s.log.Info("node tags changed", "node", n.Name, "key", n.Key.Short(), "tags", n.Tags)
	return w, nil
}

// RenameNode renames a node and pushes it to its peers and to itself.
func (s *Server) RenameNode(ctx context.Context, name, newName string) (wire.Node, error) {
	newName, err := ValidateName(newName)
	if err != nil {
		return wire.Node{}, err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	n, err := s.store.RenameNode(ctx, name, newName)
	if err != nil {
		return wire.Node{}, err
	}
	w := s.hub.setName(n.Key, n.Name, s.withNode(&n))
	s.log.Info("node renamed", "from", name, "to", n.Name, "key", n.Key.Short())
	return w, nil
}

// ValidateName checks a new name for a node, a DNS label, and returns it
// in lower case, as registrations store names.
func ValidateName(name string) (string, error) {
	if err := wire.ValidDNSLabel(name); err != nil {
		return "", fmt.Errorf("name %q: %w", name, err)
	}
	return strings.ToLower(name), nil
}

// Bans lists the banned keys.
func (s *Server) Bans(ctx context.Context) ([]Ban, error) { return bans(ctx, s.store) }

// AllowNode lifts a ban.
func (s *Server) AllowNode(ctx context.Context, keyOrName string) (Ban, error) {
	b, err := s.store.Allow(ctx, keyOrName)
	if err != nil {
		return Ban{}, err
	}
	s.log.Info("banned key allowed back", "name", b.Name, "key", b.Key.Short())
	return toBan(b), nil
}

// OpenAdmin connects to the coordinator running on cfg.DataDir, or opens
// the data directory itself when none is running.
func OpenAdmin(ctx context.Context, cfg config.Coordinator) (Admin, error) {
	sock := filepath.Join(cfg.DataDir, adminSocket)
	c, err := (&net.Dialer{}).DialContext(ctx, "unix", sock)
	switch {
	case err == nil:
		c.Close()
		return newAdminClient(sock), nil
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		// No coordinator (a refused socket is a stale one after a crash).
	default:
		return nil, fmt.Errorf("admin socket %s: %w (run as the coordinator's user or root)", sock, err)
	}
	// A PostgreSQL database needs no data directory on this host.
	if !store.IsPostgresURL(database(cfg)) {
		if _, err := os.Stat(cfg.DataDir); err != nil {
			return nil, fmt.Errorf("data dir: %w (check --data-dir; the coordinator creates it on its first start)", err)
		}
	}
	st, err := store.Open(ctx, database(cfg))
	if err != nil {
		return nil, err
	}
	return &offlineAdmin{cfg: cfg, store: st}, nil
}

// offlineAdmin administers a data directory no coordinator is serving.
type offlineAdmin struct {
	cfg   config.Coordinator
	store store.Store
}

// CreateToken uses the public URL given to this command or the one the
// coordinator recorded, and the certificate it will serve.
func (a *offlineAdmin) CreateToken(ctx context.Context, opts TokenOptions) (crypto.Token, error) {
	if store.IsPostgresURL(database(a.cfg)) {
		return a.createSharedToken(ctx, opts)
	}
	url := a.cfg.PublicURL
	if url == "" {
		stored, err := a.store.Setting(ctx, settingPublicURL)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return crypto.Token{}, err
		}
		url = stored
	}
	if url == "" {
		return crypto.Token{}, ErrNoPublicURL
	}
	_, pin, err := loadCert(a.cfg, urlHost(url))
	if err != nil {
		return crypto.Token{}, err
	}
	// A pin from another certificate would make every node refuse the
	// coordinator: compare with the one it served last.
	served, err := a.store.Setting(ctx, settingPin)
	if err == nil && served != pin {
		return crypto.Token{}, fmt.Errorf("the coordinator last served a certificate with pin %s, but this command sees %s: give it the same --config, --tls-cert and --tls-key as the coordinator", served, pin)
	}
	return issueToken(ctx, a.store, false, url, pin, opts)
}

// createSharedToken makes a token on a database that several
// coordinators may share, where the recorded public URL and pin are the
// last started coordinator's, not necessarily this host's: this host's
// coordinator is the running one whose lease carries this host's
// certificate, unless --public-url names it; a running coordinator at
// that URL must serve this certificate.
func (a *offlineAdmin) createSharedToken(ctx context.Context, opts TokenOptions) (crypto.Token, error) {
	live, err := a.store.LiveCoordinators(ctx, time.Now())
	if err != nil {
		return crypto.Token{}, err
	}
	url := a.cfg.PublicURL
	_, pin, err := loadCert(a.cfg, urlHost(url))
	if err != nil {
		return crypto.Token{}, err
	}
	for _, l := range live {
		switch {
		case url == "" && l.Pin == pin:
			url = l.URL
		case l.URL == url && l.Pin != pin:
			return crypto.Token{}, fmt.Errorf("the coordinator at %s serves a certificate with pin %s, but this command sees %s: give it the same --config, --tls-cert and --tls-key as that coordinator", url, l.Pin, pin)
		}
	}
	if url == "" {
		return crypto.Token{}, fmt.Errorf("no running coordinator serves this host's certificate (pin %s), and several may share the database: give --public-url, the URL of the coordinator whose --data-dir or --tls-cert this command uses", pin)
	}
	return issueToken(ctx, a.store, true, url, pin, opts)
}

func (a *offlineAdmin) Tokens(ctx context.Context) ([]TokenInfo, error) {
	return tokenInfos(ctx, a.store)
}

func (a *offlineAdmin) RevokeToken(ctx context.Context, id string) error {
	return a.store.RevokeToken(ctx, id, time.Now())
}

func (a *offlineAdmin) Nodes(ctx context.Context) ([]wire.Node, error) {
	nodes, err := a.store.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]wire.Node, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, toWire(n, false))
	}
	return out, nil
}

func (a *offlineAdmin) RemoveNode(ctx context.Context, name string) (wire.Node, error) {
	n, err := a.store.RemoveNode(ctx, name, time.Now())
	if err != nil {
		return wire.Node{}, err
	}
	return toWire(n, false), nil
}

func (a *offlineAdmin) TagNode(ctx context.Context, name string, add, remove []string) (wire.Node, error) {
	if err := ValidateTags(append(slices.Clone(add), remove...)); err != nil {
		return wire.Node{}, err
	}
	old, err := a.activeNode(ctx, name)
	if err != nil {
		return wire.Node{}, err
	}
	n, err := a.store.UpdateTags(ctx, name, add, remove)
	if err != nil {
		return wire.Node{}, err
	}
	cfgAuto, err := newAutoApprover(a.cfg)
	if err != nil {
		return wire.Node{}, err
	}
	pol, err := a.storedPolicy(ctx)
	if err != nil {
		return wire.Node{}, err
	}
	if n, err = autoApproveTagged(ctx, a.store, approverWith(cfgAuto, pol), old.Tags, n); err != nil {
		return wire.Node{}, err
	}
	return toWire(n, false), nil
}

// activeNode is the active node of that name, as stored.
func (a *offlineAdmin) activeNode(ctx context.Context, name string) (store.Node, error) {
	nodes, err := a.store.Nodes(ctx)
	if err != nil {
		return store.Node{}, err
	}
	for _, n := range nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return store.Node{}, fmt.Errorf("node %q: %w", name, ErrNotFound)
}

// Routes lists the stored routes; which are primary is the running
// coordinator's to say.
func (a *offlineAdmin) Routes(ctx context.Context) ([]RouteInfo, error) {
	nodes, err := a.store.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	var out []RouteInfo
	for _, n := range nodes {
		out = append(out, routeInfos(n, false, func(netip.Prefix) bool { return false })...)
	}
	return out, nil
}

func (a *offlineAdmin) ApproveRoutes(ctx context.Context, name string, prefixes []netip.Prefix) ([]RouteInfo, error) {
	return a.updateRoutes(ctx, name, prefixes, nil)
}

func (a *offlineAdmin) RejectRoutes(ctx context.Context, name string, prefixes []netip.Prefix) ([]RouteInfo, error) {
	return a.updateRoutes(ctx, name, nil, prefixes)
}

func (a *offlineAdmin) updateRoutes(ctx context.Context, name string, approve, reject []netip.Prefix) ([]RouteInfo, error) {
	n, err := a.store.UpdateRoutes(ctx, name, approve, reject, time.Now())
	if err != nil {
		return nil, err
	}
	return routeInfos(n, false, func(netip.Prefix) bool { return false }), nil
}

func (a *offlineAdmin) RenameNode(ctx context.Context, name, newName string) (wire.Node, error) {
	newName, err := ValidateName(newName)
	if err != nil {
		return wire.Node{}, err
	}
	n, err := a.store.RenameNode(ctx, name, newName)
	if err != nil {
		return wire.Node{}, err
	}
	return toWire(n, false), nil
}

func (a *offlineAdmin) Bans(ctx context.Context) ([]Ban, error) { return bans(ctx, a.store) }

func (a *offlineAdmin) AllowNode(ctx context.Context, keyOrName string) (Ban, error) {
	b, err := a.store.Allow(ctx, keyOrName)
	return toBan(b), err
}

// SetPolicy checks the policy against the stored nodes and stores it;
// the coordinator applies it when it starts.
func (a *offlineAdmin) SetPolicy(ctx context.Context, text string) (PolicyInfo, error) {
	nodes, err := a.Nodes(ctx)
	if err != nil {
		return PolicyInfo{}, err
	}
	pn := make([]policy.Node, len(nodes))
	for i, n := range nodes {
		pn[i] = policy.NodeOf(n)
	}
	pol, warnings, err := checkPolicy(text, pn, policy.Network{V4: a.cfg.Network, V6: a.cfg.NetworkV6})
	if err != nil {
		return PolicyInfo{}, err
	}
	cfgAuto, err := newAutoApprover(a.cfg)
	if err != nil {
		return PolicyInfo{}, err
	}
	prev, err := a.storedPolicy(ctx)
	if err != nil {
		return PolicyInfo{}, err
	}
	v, err := a.store.SetPolicy(ctx, text, time.Now())
	if err != nil {
		return PolicyInfo{}, err
	}
	if _, err := approveForPolicy(ctx, a.store, cfgAuto, prev, pol); err != nil {
		return PolicyInfo{}, err
	}
	info := toPolicyInfo(v)
	info.Warnings = warnings
	return info, nil
}

// storedPolicy is the newest stored policy, parsed; nil when there is
// none, or it no longer parses (the coordinator refuses to start with it,
// so it approves nothing).
func (a *offlineAdmin) storedPolicy(ctx context.Context) (*policy.Policy, error) {
	v, err := a.store.Policy(ctx, 0)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil || v.Text == "" {
		return nil, err
	}
	pol, _ := policy.Parse(policyFile, []byte(v.Text))
	return pol, nil
}

func (a *offlineAdmin) Policy(ctx context.Context, version uint64) (PolicyInfo, error) {
	return storedPolicy(ctx, a.store, version)
}

func (a *offlineAdmin) Close() error { return a.store.Close() }
