tcpdump --immediate-mode -U -i hbs-prh  -w port-reuse.pcap tcp port 5672
