tcpdump --immediate-mode -U -i hbs-h  -w netns-blackhole.pcap tcp port 5672
