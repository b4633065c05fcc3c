tcpdump --immediate-mode -U -i lo  -w client-sigstop.pcap tcp port 5672
