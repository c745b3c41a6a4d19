from milvusdm.cli import main

main()
