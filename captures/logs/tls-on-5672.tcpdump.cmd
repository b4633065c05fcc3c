tcpdump --immediate-mode -U -i lo  -w tls-on-5672.pcap tcp port 5672 and (tcp port 49895)
