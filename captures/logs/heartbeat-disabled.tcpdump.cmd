tcpdump --immediate-mode -U -i lo  -w heartbeat-disabled.pcap tcp port 5672
