// The keepalived.conf keyword table: which keywords each block accepts, which take a block, and the
// values they allow. Pure data.
// Source: keepalived.conf(5) of keepalived 2.2.7 as shipped by Debian 12 (keepalived 1:2.2.7-1), section
// by section, plus the older spellings that keepalived 2.2.7's parser still accepts (lb_algo, lb_kind,
// nb_get_retry, lvs_sync_daemon_interface, vrrp_track_file...). Ranges are the ones keepalived's
// parser enforces (read_unsigned/read_int bounds in vrrp_parser.c and check_parser.c of 2.2.7).

export type ArgRule =
  | { kind: 'int'; min: number; max: number; what?: string }
  | { kind: 'number'; min: number; max: number }
  | { kind: 'enum'; values: readonly string[]; caseInsensitive?: boolean }
  | { kind: 'bool' }
  | { kind: 'port' }
  | { kind: 'digest' }
  | { kind: 'any' };

export interface Spec {
  /** 'keywords': a block of keywords (checked); 'values': a block of free-form lines (addresses, names). */
  block?: 'keywords' | 'values';
  /** The block may be left out (keyword valid alone too). */
  blockOptional?: boolean;
  children?: Readonly<Record<string, Spec>>;
  /** Minimum and maximum number of arguments on the keyword line. */
  minArgs?: number;
  maxArgs?: number;
  /** Rules for the first arguments, in order. */
  args?: readonly ArgRule[];
  /** Deprecated spelling: what to write instead. */
  deprecated?: string;
  /** Only meaningful once per block. */
  unique?: boolean;
  /** The first keepalived release whose parser accepts it (2.2.7 is Debian 12's, 2.3.x Debian 13's). */
  since?: string;
}

const flag: Spec = { maxArgs: 0 };
const any: Spec = {};
const one: Spec = { minArgs: 1 };
const bool: Spec = { maxArgs: 1, args: [{ kind: 'bool' }] };
const timer: Spec = { minArgs: 1, maxArgs: 1, args: [{ kind: 'number', min: 0, max: 4294 }] };
const uint = (min: number, max: number, what?: string): Spec => ({
  minArgs: 1,
  maxArgs: 1,
  args: [what ? { kind: 'int', min, max, what } : { kind: 'int', min, max }],
});
const values: Spec = { block: 'values' };
const script: Spec = { minArgs: 1 };

export const LVS_SCHEDULERS = [
  'rr',
  'wrr',
  'lc',
  'wlc',
  'lblc',
  'sh',
  'mh',
  'dh',
  'fo',
  'ovf',
  'lblcr',
  'sed',
  'nq',
  'twos',
] as const;
export const LVS_METHODS = ['NAT', 'DR', 'TUN'] as const;

const lvsMethod: Spec = { minArgs: 1, args: [{ kind: 'enum', values: LVS_METHODS }] };
const lvsSched: Spec = { minArgs: 1, maxArgs: 1, args: [{ kind: 'enum', values: LVS_SCHEDULERS }] };

const checkerCommon: Record<string, Spec> = {
  connect_ip: one,
  connect_port: { minArgs: 1, maxArgs: 1, args: [{ kind: 'port' }] },
  bindto: one,
  bind_if: one,
  bind_port: { minArgs: 1, maxArgs: 1, args: [{ kind: 'port' }] },
  fwmark: uint(0, 4294967295),
  alpha: bool,
  connect_timeout: timer,
  retry: uint(0, 4294967295),
  nb_get_retry: { ...uint(0, 4294967295), deprecated: 'retry' },
  delay_before_retry: timer,
  warmup: timer,
  delay_loop: timer,
  log_all_failures: bool,
};

const url: Spec = {
  block: 'keywords',
  children: {
    path: { minArgs: 1, maxArgs: 1 },
    digest: { minArgs: 1, maxArgs: 1, args: [{ kind: 'digest' }] },
    status_code: one,
    virtualhost: one,
    regex: one,
    regex_no_match: flag,
    regex_options: one,
    regex_stack: any,
    regex_min_offset: one,
    regex_max_offset: one,
  },
};

const httpGet: Spec = {
  block: 'keywords',
  children: { ...checkerCommon, url, http_protocol: one, virtualhost: one, fast_recovery: bool },
};
(httpGet.children as Record<string, Spec>).tls_compliant = { ...bool, since: '2.2.8' };
const sslGet: Spec = { block: 'keywords', children: { ...httpGet.children, enable_sni: bool } };

const checkers: Record<string, Spec> = {
  HTTP_GET: httpGet,
  SSL_GET: sslGet,
  TCP_CHECK: { block: 'keywords', blockOptional: true, children: checkerCommon },
  SMTP_CHECK: {
    block: 'keywords',
    children: { ...checkerCommon, helo_name: one, host: { block: 'keywords', children: checkerCommon } },
  },
  DNS_CHECK: { block: 'keywords', children: { ...checkerCommon, type: one, name: one } },
  MISC_CHECK: {
    block: 'keywords',
    children: {
      ...checkerCommon,
      misc_path: script,
      misc_timeout: uint(0, 4294967295),
      misc_dynamic: flag,
      user: one,
    },
  },
  BFD_CHECK: { block: 'keywords', children: { ...checkerCommon, name: one } },
  PING_CHECK: { block: 'keywords', blockOptional: true, children: checkerCommon },
  UDP_CHECK: {
    block: 'keywords',
    blockOptional: true,
    children: {
      ...checkerCommon,
      payload: one,
      require_reply: any,
      min_reply_length: one,
      max_reply_length: one,
    },
  },
  FILE_CHECK: {
    block: 'keywords',
    children: { ...checkerCommon, track_file: one, dynamic: flag, weight: one },
  },
};

const realServer: Spec = {
  block: 'keywords',
  blockOptional: true,
  minArgs: 1,
  maxArgs: 2,
  children: {
    weight: { minArgs: 1, maxArgs: 1, args: [{ kind: 'int', min: 0, max: 65535, what: 'IPVS weight' }] },
    lvs_method: lvsMethod,
    lb_kind: lvsMethod,
    notify_up: script,
    notify_down: script,
    uthreshold: uint(0, 2147483647),
    lthreshold: uint(0, 2147483647),
    smtp_alert: bool,
    virtualhost: one,
    snmp_name: one,
    alpha: bool,
    connect_timeout: timer,
    retry: uint(0, 4294967295),
    delay_before_retry: timer,
    warmup: timer,
    delay_loop: timer,
    inhibit_on_failure: bool,
    ...checkers,
  },
};

const virtualServer: Spec = {
  block: 'keywords',
  minArgs: 1,
  maxArgs: 2,
  children: {
    lvs_sched: lvsSched,
    lb_algo: lvsSched,
    'flag-1': flag,
    'flag-2': flag,
    'flag-3': flag,
    'sh-port': flag,
    'sh-fallback': flag,
    'mh-port': flag,
    'mh-fallback': flag,
    ops: flag,
    hashed: flag,
    lvs_method: lvsMethod,
    lb_kind: lvsMethod,
    persistence_engine: one,
    persistence_timeout: { maxArgs: 1, args: [{ kind: 'int', min: 1, max: 2678400, what: 'seconds' }] },
    persistence_granularity: one,
    protocol: {
      minArgs: 1,
      maxArgs: 1,
      args: [{ kind: 'enum', values: ['TCP', 'UDP', 'SCTP'], caseInsensitive: true }],
    },
    ha_suspend: flag,
    smtp_alert: bool,
    virtualhost: one,
    snmp_name: one,
    alpha: flag,
    omega: flag,
    quorum: uint(1, 4294967295),
    hysteresis: uint(0, 4294967295),
    quorum_up: script,
    quorum_down: script,
    ip_family: { minArgs: 1, maxArgs: 1, args: [{ kind: 'enum', values: ['inet', 'inet6'] }] },
    sorry_server: { minArgs: 1, maxArgs: 2 },
    sorry_server_inhibit: bool,
    sorry_server_lvs_method: lvsMethod,
    connect_timeout: timer,
    retry: uint(0, 4294967295),
    delay_before_retry: timer,
    warmup: timer,
    delay_loop: timer,
    inhibit_on_failure: bool,
    real_server: realServer,
  },
};

const trackBlocks: Record<string, Spec> = {
  track_interface: values,
  track_script: values,
  track_file: values,
  track_process: values,
  track_bfd: values,
};

const notify: Record<string, Spec> = {
  notify_master: script,
  notify_backup: script,
  notify_fault: script,
  notify_stop: script,
  notify_deleted: any,
  notify: script,
  notify_master_rx_lower_pri: script,
  notify_priority_changes: bool,
  smtp_alert: bool,
};

const vrrpInstance: Spec = {
  block: 'keywords',
  minArgs: 1,
  maxArgs: 1,
  children: {
    // from vrrp_parser.c of the release named
    no_virtual_ipaddress: { ...flag, since: '2.2.8' },
    timer_expired_backup: { ...flag, since: '2.2.8' },
    thread_timer_expired: { ...flag, since: '2.3.2' },
    owner_ignore_adverts: { ...flag, since: '2.3.3' },
    state: { minArgs: 1, maxArgs: 1, args: [{ kind: 'enum', values: ['MASTER', 'BACKUP'] }] },
    interface: { minArgs: 1, maxArgs: 1 },
    vrf: one,
    use_vmac: any,
    use_vmac_addr: flag,
    vmac_xmit_base: flag,
    use_ipvlan: any,
    native_ipv6: { ...flag, deprecated: 'nothing (the addresses decide the family)' },
    dont_track_primary: flag,
    ...trackBlocks,
    mcast_src_ip: one,
    unicast_src_ip: one,
    mcast_dst_ip: one,
    track_src_ip: flag,
    version: { minArgs: 1, maxArgs: 1, args: [{ kind: 'enum', values: ['2', '3'] }] },
    check_unicast_src: flag,
    unicast_peer: values,
    unicast_fault_no_peer: flag,
    unicast_ttl: uint(0, 255),
    old_unicast_checksum: any,
    garp_master_delay: uint(0, 4294967295),
    garp_master_repeat: uint(1, 4294967295),
    garp_lower_prio_delay: uint(0, 4294967295),
    garp_lower_prio_repeat: uint(0, 4294967295),
    garp_master_refresh: uint(0, 4294967295),
    garp_master_refresh_repeat: uint(1, 4294967295),
    garp_extra_if: any,
    // vrrp_parser.c of 2.2.7: 'Deprecated after v2.2.2 - incorrect keyword'
    vmac_garp_intvl: { deprecated: 'garp_extra_if' },
    down_timer_adverts: uint(1, 100),
    lower_prio_no_advert: any,
    higher_prio_send_advert: any,
    virtual_router_id: { ...uint(1, 255, 'VRRP router id'), unique: true },
    priority: { ...uint(1, 255, 'VRRP priority'), unique: true },
    advert_int: { minArgs: 1, maxArgs: 1, args: [{ kind: 'number', min: 0.01, max: 255 }] },
    authentication: {
      block: 'keywords',
      children: {
        auth_type: { minArgs: 1, maxArgs: 1, args: [{ kind: 'enum', values: ['PASS', 'AH'] }] },
        auth_pass: { minArgs: 1, maxArgs: 1 },
      },
    },
    virtual_ipaddress: values,
    virtual_ipaddress_excluded: values,
    promote_secondaries: flag,
    virtual_routes: values,
    virtual_rules: values,
    accept: flag,
    no_accept: flag,
    nopreempt: flag,
    preempt: flag,
    preempt_delay: uint(0, 1000),
    skip_check_adv_addr: any,
    strict_mode: any,
    debug: any,
    kernel_rx_buf_size: one,
    linkbeat_use_polling: { ...flag, deprecated: 'a global linkbeat_interfaces block' },
    lvs_sync_daemon_interface: {
      ...one,
      deprecated: 'lvs_sync_daemon <INTERFACE> <VRRP_INSTANCE> in global_defs',
    },
    ...notify,
  },
};

const globalDefs: Spec = {
  block: 'keywords',
  children: Object.fromEntries(
    [
      'net_namespace',
      'net_namespace_ipvs',
      'namespace_with_ipsets',
      'instance',
      'use_pid_dir',
      'linkbeat_use_polling',
      'child_wait_time',
      'tmp_config_directory',
      'config_save_dir',
      'process_names',
      'process_name',
      'vrrp_process_name',
      'checker_process_name',
      'bfd_process_name',
      'startup_script',
      'startup_script_timeout',
      'shutdown_script',
      'shutdown_script_timeout',
      'notification_email_from',
      'smtp_server',
      'smtp_helo_name',
      'smtp_connect_timeout',
      'smtp_alert',
      'smtp_alert_vrrp',
      'smtp_alert_checker',
      'checker_log_all_failures',
      'no_email_faults',
      'vrrp_mcast_group4',
      'vrrp_mcast_group6',
      'default_interface',
      'lvs_sync_daemon',
      'lvs_timeouts',
      'lvs_flush',
      'lvs_flush_on_stop',
      'vrrp_garp_master_delay',
      'vrrp_garp_master_repeat',
      'vrrp_garp_lower_prio_delay',
      'vrrp_down_timer_adverts',
      'vrrp_garp_lower_prio_repeat',
      'vrrp_garp_master_refresh',
      'vrrp_garp_master_refresh_repeat',
      'vrrp_min_garp',
      'vrrp_garp_extra_if',
      'vrrp_lower_prio_no_advert',
      'vrrp_higher_prio_send_advert',
      'vrrp_version',
      'nftables',
      'nftables_priority',
      'nftables_counters',
      'nftables_ifindex',
      'nftables_ipvs',
      'nftables_ipvs_priority',
      'nftables_ipvs_start_fwmark',
      'vrrp_iptables',
      'vrrp_ipsets',
      'disable_local_igmp',
      'vrrp_check_unicast_src',
      'vrrp_skip_check_adv_addr',
      'vrrp_strict',
      'vrrp_notify_priority_changes',
      'max_auto_priority',
      'min_auto_priority_delay',
      'vrrp_priority',
      'checker_priority',
      'bfd_priority',
      'vrrp_no_swap',
      'checker_no_swap',
      'bfd_no_swap',
      'vrrp_cpu_affinity',
      'checker_cpu_affinity',
      'bfd_cpu_affinity',
      'vrrp_rt_priority',
      'checker_rt_priority',
      'bfd_rt_priority',
      'vrrp_rlimit_rttime',
      'checker_rlimit_rttime',
      'bfd_rlimit_rttime',
      'snmp_socket',
      'enable_snmp_vrrp',
      'enable_snmp_keepalived',
      'enable_snmp_checker',
      'enable_snmp_rfc',
      'enable_snmp_rfcv2',
      'enable_snmp_rfcv3',
      'enable_traps',
      'enable_dbus',
      'dbus_service_name',
      'script_user',
      'enable_script_security',
      'notify_fifo',
      'notify_fifo_script',
      'vrrp_notify_fifo',
      'vrrp_notify_fifo_script',
      'lvs_notify_fifo',
      'lvs_notify_fifo_script',
      'fifo_write_vrrp_states_on_reload',
      'dynamic_interfaces',
      'vrrp_netlink_cmd_rcv_bufs',
      'vrrp_netlink_cmd_rcv_bufs_force',
      'vrrp_netlink_monitor_rcv_bufs',
      'vrrp_netlink_monitor_rcv_bufs_force',
      'lvs_netlink_cmd_rcv_bufs',
      'lvs_netlink_cmd_rcv_bufs_force',
      'lvs_netlink_monitor_rcv_bufs',
      'lvs_netlink_monitor_rcv_bufs_force',
      'process_monitor_rcv_bufs',
      'process_monitor_rcv_bufs_force',
      'vrrp_rx_bufs_policy',
      'vrrp_rx_bufs_multiplier',
      'rs_init_notifies',
      'no_checker_emails',
      'umask',
      'vrrp_startup_delay',
      'log_unknown_vrids',
      'vmac_prefix',
      'vmac_addr_prefix',
      'random_seed',
      'reload_check_config',
      'include_check',
      'reload_time_file',
      'reload_repeat',
      'reload_file',
      'data_use_instance',
      'lvs_id',
    ].map((k) => [k, any] as const),
  ),
};
(globalDefs.children as Record<string, Spec>).router_id = { minArgs: 1, maxArgs: 1, unique: true };
(globalDefs.children as Record<string, Spec>).notification_email = values;
(globalDefs.children as Record<string, Spec>).lvs_id = { ...one, deprecated: 'router_id' };
// read_decimal_unsigned_strvec(strvec, 1, &v, 1, 4294967295, 6) in global_parser.c: seconds, not 0
for (const k of ['vrrp_garp_interval', 'vrrp_gna_interval'])
  (globalDefs.children as Record<string, Spec>)[k] = {
    minArgs: 1,
    maxArgs: 1,
    args: [{ kind: 'number', min: 0.000001, max: 4294.967295 }],
  };
// keywords of later releases (install_keyword in global_parser.c of the release that added each)
for (const [k, since, spec] of [
  ['json_version', '2.2.8', one],
  ['v3_checksum_as_v2', '2.2.8', any],
  ['dbus_no_interface_name', '2.3.0', any],
  ['snmp_rs_stats_update_interval', '2.3.0', one],
  ['snmp_vs_stats_update_interval', '2.3.0', one],
  ['use_symlink_paths', '2.3.0', any],
  ['iproute_etc_dir', '2.3.2', one],
  ['iproute_usr_dir', '2.3.2', one],
  ['json_dump_file', '2.3.3', one],
  ['state_dump_file', '2.3.3', one],
  ['stats_dump_file', '2.3.3', one],
  ['vrrp_owner_ignore_adverts', '2.3.3', any],
] as const)
  (globalDefs.children as Record<string, Spec>)[k] = { ...spec, since };
// spellings keepalived 2.2.7's global_parser.c still installs, marked deprecated there
for (const [old, now] of [
  ['vrrp_rlimit_rtime', 'vrrp_rlimit_rttime'],
  ['checker_rlimit_rtime', 'checker_rlimit_rttime'],
  ['bfd_rlimit_rtime', 'bfd_rlimit_rttime'],
  ['lvs_flush_onstop', 'lvs_flush_on_stop'],
  ['lvs_process_name', 'checker_process_name'],
  ['vrrp_vmac_garp_intvl', 'vrrp_garp_extra_if'],
] as const)
  (globalDefs.children as Record<string, Spec>)[old] = { deprecated: now };

/** Keywords allowed at the top level of keepalived.conf and the files it includes. */
export const TOP: Readonly<Record<string, Spec>> = {
  global_defs: globalDefs,
  linkbeat_interfaces: values,
  track_group: { block: 'keywords', minArgs: 1, children: { group: values } },
  static_ipaddress: values,
  static_routes: values,
  static_rules: values,
  track_file: { block: 'keywords', minArgs: 1, children: { file: one, weight: any, init_file: any } },
  vrrp_track_file: {
    block: 'keywords',
    minArgs: 1,
    deprecated: 'track_file',
    children: { file: one, weight: any, init_file: any },
  },
  vrrp_track_process: {
    block: 'keywords',
    minArgs: 1,
    children: Object.fromEntries(
      [
        'process',
        'param_match',
        'weight',
        'quorum',
        'quorum_max',
        'fork_delay',
        'terminate_delay',
        'delay',
        'full_command',
      ].map((k) => [k, any] as const),
    ),
  },
  bfd_instance: {
    block: 'keywords',
    minArgs: 1,
    children: Object.fromEntries(
      [
        'neighbor_ip',
        'neighbour_ip',
        'source_ip',
        'min_rx',
        'min_tx',
        'idle_tx',
        'multiplier',
        'passive',
        'ttl',
        'hoplimit',
        'max_hops',
        'weight',
        'vrrp',
        'checker',
      ].map((k) => [k, any] as const),
    ),
  },
  vrrp_script: {
    block: 'keywords',
    minArgs: 1,
    maxArgs: 1,
    children: {
      script: script,
      interval: timer,
      timeout: timer,
      weight: { minArgs: 1, maxArgs: 2, args: [{ kind: 'int', min: -253, max: 253, what: 'script weight' }] },
      rise: uint(1, 4294967295),
      fall: uint(1, 4294967295),
      user: one,
      init_fail: flag,
    },
  },
  vrrp_sync_group: {
    block: 'keywords',
    minArgs: 1,
    maxArgs: 1,
    children: {
      group: values,
      ...trackBlocks,
      ...notify,
      global_tracking: { ...flag, deprecated: 'track_interface, track_script and track_file on the group' },
      sync_group_tracking_weight: flag,
    },
  },
  garp_group: {
    block: 'keywords',
    children: { garp_interval: one, gna_interval: one, interface: one, interfaces: values },
  },
  vrrp_instance: vrrpInstance,
  interface_up_down_delays: values,
  virtual_server_group: { block: 'values', minArgs: 1, maxArgs: 1 },
  virtual_server: virtualServer,
  SSL: {
    block: 'keywords',
    children: { password: one, ca: one, certificate: one, key: one },
  },
  // Accepted at the top level by keepalived 2.2.7 as well as in global_defs.
  net_namespace: one,
  net_namespace_ipvs: any,
  namespace_with_ipsets: flag,
  instance: one,
  use_pid_dir: flag,
  linkbeat_use_polling: flag,
  child_wait_time: one,
};

// bfd_parser.c of 2.2.8
((TOP.bfd_instance as Spec).children as Record<string, Spec>).multihop = { ...flag, since: '2.2.8' };
