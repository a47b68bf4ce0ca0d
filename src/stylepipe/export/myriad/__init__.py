"""The Myriad X (Luxonis OAK-1) target: operator check, projected speed and blob compilation."""
