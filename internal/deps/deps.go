package deps

import (
	_ "github.com/coder/websocket"
	_ "github.com/coreos/go-systemd/v22/daemon"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/pion/stun/v3"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/songgao/water"
	_ "github.com/spf13/cobra"
	_ "github.com/spf13/viper"
	_ "github.com/vishvananda/netlink"
	_ "golang.org/x/crypto/chacha20poly1305"
	_ "golang.zx2c4.com/wireguard/device"
	_ "golang.zx2c4.com/wireguard/tun/netstack"
	_ "modernc.org/sqlite"
)
