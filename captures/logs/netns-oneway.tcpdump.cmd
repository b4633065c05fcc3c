tcpdump --immediate-mode -U -i hbs-h  -w netns-oneway.pcap tcp port 5672
